package inabitapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// call is one of the client's two calls, seen the same way: the token, the answer's error text
// (refresh only), the error.
type call struct {
	name  string
	field string
	do    func(c *Client) (tok, answerErrors string, err error)
}

var bothCalls = []call{
	{"access", fieldAccessToken, func(c *Client) (string, string, error) {
		tok, err := c.AccessToken(context.Background(), "login")
		return tok, "", err
	}},
	{"refresh", fieldRefreshLogin, func(c *Client) (string, string, error) {
		return c.RefreshLoginToken(context.Background(), "login")
	}},
}

// answerStatuses are the statuses an answer carrying a token may come with: inabit's, or a
// gateway's passing inabit's body on.
var answerStatuses = []int{200, 400, 401, 403, 429, 500, 502}

func TestCalls_KeepTokenWhenErrorsMemberIsMalformed(t *testing.T) {
	errorsMembers := []struct {
		name, json, wantNote string
	}{
		{"object instead of a list", `{"message":"audit sink slow"}`, "audit sink slow"},
		{"message is a number", `[{"message":7}]`, "7"},
		{"message is an object", `[{"message":{"text":"slow"}}]`, "slow"},
		{"a string", `"x"`, "x"},
		{"list of strings", `["first","second"]`, "second"},
		{"list of numbers", `[1,2]`, "1"},
		{"a number", `503`, "503"},
		{"extensions not an object", `[{"message":"m","extensions":"UNAUTHENTICATED"}]`, "m"},
		{"well-formed", `[{"message":"audit log write failed","extensions":{"code":"INTERNAL_SERVER_ERROR"}}]`, "audit log write failed"},
	}
	for _, c := range bothCalls {
		for _, status := range answerStatuses {
			for _, em := range errorsMembers {
				t.Run(c.name+"/"+http.StatusText(status)+"/"+em.name, func(t *testing.T) {
					body := `{"data":{"` + c.field + `":"new-token"},"errors":` + em.json + `}`
					tok, notes, err := c.do(answering(status, nil, []byte(body)))
					if err != nil || tok != "new-token" {
						t.Fatalf("HTTP %d %s: tok=%q err=%v; want the token", status, body, tok, err)
					}
					if c.field == fieldRefreshLogin && !strings.Contains(notes, em.wantNote) {
						t.Fatalf("answerErrors = %q, want it to mention %q", notes, em.wantNote)
					}
				})
			}
		}
	}
}

func TestCalls_IgnoreByteOrderMarkAndLeadingWhitespace(t *testing.T) {
	prefixes := map[string]string{
		"BOM":                 "\xEF\xBB\xBF",
		"whitespace":          " \r\n\t ",
		"BOM then whitespace": "\xEF\xBB\xBF\r\n",
		"whitespace then BOM": "\n\xEF\xBB\xBF",
	}
	for _, c := range bothCalls {
		for name, prefix := range prefixes {
			t.Run(c.name+"/"+name+"/token", func(t *testing.T) {
				tok, _, err := c.do(answering(200, nil, []byte(prefix+`{"data":{"`+c.field+`":"new-token"}}`)))
				if err != nil || tok != "new-token" {
					t.Fatalf("tok=%q err=%v; want the token", tok, err)
				}
			})
			t.Run(c.name+"/"+name+"/partial at 500", func(t *testing.T) {
				tok, _, err := c.do(answering(500, nil, []byte(prefix+`{"data":{"`+c.field+`":"new-token"},"errors":[{"message":"m"}]}`)))
				if err != nil || tok != "new-token" {
					t.Fatalf("tok=%q err=%v; want the token", tok, err)
				}
			})
			t.Run(c.name+"/"+name+"/unauthenticated", func(t *testing.T) {
				_, _, err := c.do(answering(200, nil, []byte(prefix+`{"data":null,"errors":[{"message":"jwt expired","extensions":{"code":"UNAUTHENTICATED"}}]}`)))
				var ue *Error
				if !errors.Is(err, ErrUnauthorized) || !errors.As(err, &ue) || !ue.Answered {
					t.Fatalf("err = %v, want inabit's own ErrUnauthorized", err)
				}
			})
		}
	}
}

func TestCalls_ReturnTokensTrimmedOfSurroundingWhitespace(t *testing.T) {
	for _, c := range bothCalls {
		for _, raw := range []string{`tok\n`, ` tok `, `\ttok\r\n`, `\n tok`} {
			for _, status := range []int{200, 500} {
				t.Run(c.name+"/"+raw+"/"+http.StatusText(status), func(t *testing.T) {
					body := `{"data":{"` + c.field + `":"` + raw + `"}}`
					if status != 200 {
						body = `{"data":{"` + c.field + `":"` + raw + `"},"errors":[{"message":"m"}]}`
					}
					tok, _, err := c.do(answering(status, nil, []byte(body)))
					if err != nil || tok != "tok" {
						t.Fatalf("%s: tok=%q err=%v; want %q", body, tok, err, "tok")
					}
				})
			}
		}
	}
}

// TestLogHint_GivesTheHTMLTitleWithoutADanglingColon: a proxy's page is named by its title,
// whatever the tags' case and wherever the page starts; a page with an empty or blank title is
// "HTML page", not "HTML page: ".
func TestLogHint_GivesTheHTMLTitleWithoutADanglingColon(t *testing.T) {
	cases := map[string]string{
		"<html><head><title>502 Bad Gateway</title></head></html>": "HTML page: 502 Bad Gateway",
		"<title>Bad Gateway</title>":                               "HTML page: Bad Gateway",
		"<HTML><HEAD><TITLE>ZAP Bad Gateway</TITLE></HEAD></HTML>": "HTML page: ZAP Bad Gateway",
		"<Html><Title>Caf\xe9 down</Title></Html>":                 "HTML page: Caf\uFFFD down", // invalid UTF-8 shown as U+FFFD
		"<html><title></title><body>x</body></html>":               "HTML page",
		"<html><title> \n </title></html>":                         "HTML page",
		"oops <title></title>":                                     "HTML page",
		"<html><body>maintenance</body></html>":                    "HTML page",
		"<title>unclosed":                                          "HTML page",
		"plain text":                                               "plain text",
		"":                                                         "",
	}
	for body, want := range cases {
		if got := logHint([]byte(body)); got != want {
			t.Errorf("logHint(%q) = %q, want %q", body, got, want)
		}
	}
	_, _, err := answering(502, nil, []byte("<html><title></title></html>")).RefreshLoginToken(context.Background(), "x")
	var ue *Error
	if !errors.As(err, &ue) || ue.Said != "HTML page" {
		t.Fatalf("err = %v, want Said to name the page without a dangling colon", err)
	}
}

// TestCalls_ReadAnAnswerOfUpToOneMiB: an answer of exactly maxResponseBytes is read; one byte
// more is refused unread.
func TestCalls_ReadAnAnswerOfUpToOneMiB(t *testing.T) {
	for _, c := range bothCalls {
		answer := `{"data":{"` + c.field + `":"tok"}}`
		full := answer + strings.Repeat(" ", maxResponseBytes-len(answer))
		if tok, _, err := c.do(answering(200, nil, []byte(full))); err != nil || tok != "tok" {
			t.Errorf("%s: answer of exactly %d bytes: tok=%q err=%v", c.name, len(full), tok, err)
		}
		_, _, err := c.do(answering(200, nil, []byte(full+" ")))
		var ue *Error
		if !errors.As(err, &ue) || !errors.Is(err, ErrBadResponse) || !strings.Contains(err.Error(), "larger than 1 MiB") {
			t.Errorf("%s: answer of %d bytes: err=%v, want it refused", c.name, len(full)+1, err)
		}
	}
}

// TestCalls_TakeTheTokenOnlyFromTheirOwnField: an access token is never taken for a new login
// token, nor the other way round, whatever the status.
func TestCalls_TakeTheTokenOnlyFromTheirOwnField(t *testing.T) {
	other := map[string]string{fieldAccessToken: fieldRefreshLogin, fieldRefreshLogin: fieldAccessToken}
	for _, c := range bothCalls {
		for _, status := range []int{200, 500} {
			body := `{"data":{"` + other[c.field] + `":"not-mine"}}`
			if status != 200 {
				body = `{"data":{"` + other[c.field] + `":"not-mine"},"errors":[{"message":"m"}]}`
			}
			tok, _, err := c.do(answering(status, nil, []byte(body)))
			if err == nil || tok != "" {
				t.Errorf("%s, HTTP %d %s: tok=%q err=%v; want an error and no token", c.name, status, body, tok, err)
			}
		}
	}
}

// TestRefresh_ReportsEveryErrorOfAPartialAnswer: the errors that came with a new login token are
// all handed to the caller, by message, else by code.
func TestRefresh_ReportsEveryErrorOfAPartialAnswer(t *testing.T) {
	cases := map[string]string{
		`[{"message":"audit slow"},{"message":"cache cold"}]`:           "audit slow; cache cold",
		`[{"extensions":{"code":"AUDIT_DOWN"}}]`:                        "code AUDIT_DOWN",
		`[{"message":"  ","extensions":{"code":"AUDIT_DOWN"}}]`:         "code AUDIT_DOWN",
		`[{"message":"audit slow","extensions":{"code":"AUDIT_DOWN"}}]`: "audit slow",
		`[{}]`: "an error without a message",
		`[{"message":""},{"extensions":{"code":"X"}}]`: "code X",
	}
	for errs, want := range cases {
		body := `{"data":{"refreshApiUserLoginToken":"new"},"errors":` + errs + `}`
		tok, notes, err := answering(200, nil, []byte(body)).RefreshLoginToken(context.Background(), "x")
		if err != nil || tok != "new" || notes != want {
			t.Errorf("errors %s: tok=%q notes=%q err=%v; want notes %q", errs, tok, notes, err, want)
		}
	}
}

// TestCalls_NonGraphQLAnswerAt200IsNamedByItsKind: a 200 that is not a GraphQL answer is
// reported by the kind of answer that came instead, never by what it said.
func TestCalls_NonGraphQLAnswerAt200IsNamedByItsKind(t *testing.T) {
	cases := map[string]string{
		"maintenance window":                 "inabit returned a response that is not a valid answer (HTTP 200): text that is neither JSON nor HTML",
		"<html><title>Sorry</title></html>":  "inabit returned a response that is not a valid answer (HTTP 200): an HTML page, not a GraphQL answer (a proxy, gateway or other web server answered)",
		"":                                   "inabit returned a response that is not a valid answer (HTTP 200): an empty answer",
		`{"message":"not a GraphQL answer"}`: `inabit returned a response that is not a valid answer (HTTP 200): JSON that is not a GraphQL answer`,
	}
	for body, want := range cases {
		for _, c := range bothCalls {
			if _, _, err := c.do(answering(200, nil, []byte(body))); err == nil || err.Error() != want {
				t.Errorf("%s, 200 %q: err = %v, want %q", c.name, body, err, want)
			}
		}
	}
}
