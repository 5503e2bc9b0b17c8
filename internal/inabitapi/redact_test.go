package inabitapi

import (
	"encoding/base64"
	"math/rand"
	"net/http"
	"strings"
	"testing"
)

func TestRedact_TokenWrappedAcrossLines(t *testing.T) {
	const (
		header  = "eyJhbGciOiJIUzI1NiJ9"
		payload = "eyJzdWIiOiJ4In0"
		sig     = "c2lnbmF0dXJlc2lnbmF0dXJl"
	)
	cases := map[string]string{
		"breaks at the dots":       header + "\n." + payload + "\n." + sig,
		"signature over two lines": header + "." + payload + "." + sig[:10] + "\n" + sig[10:],
		"CRLF and indentation":     header + ".\r\n    " + payload + "\r\n\t." + sig[:7] + " \r\n  " + sig[7:],
		"CR only":                  header[:5] + "\r" + header[5:] + "." + payload + "." + sig,
		"escaped newlines in JSON": header + `\n.` + payload + `\r\n.` + sig[:12] + `\n` + sig[12:],
		"one char a line":          strings.Join(strings.Split(header+"."+payload+"."+sig, ""), "\n"),
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			for _, text := range []string{
				"bad token " + tok + " end",
				`{"message":"invalid token ` + tok + `"}`,
				"<p>\n" + tok + "\n</p>",
			} {
				got := Redact(text)
				if leak := leakedPiece(got, payload, sig); leak != "" {
					t.Fatalf("Redact(%q) = %q: %q of the token survives", text, got, leak)
				}
				if !strings.Contains(got, "[redacted]") {
					t.Fatalf("Redact(%q) = %q: nothing redacted", text, got)
				}
			}
		})
	}
}

func TestRedact_KeepsOrdinaryText(t *testing.T) {
	cases := map[string]string{
		"Access denied\nPlease contact support":             "Access denied\nPlease contact support",
		"line one\r\n  line two":                            "line one\r\n  line two",
		"request id 123e4567-e89b-12d3-a456-426614174000":   "request id 123e4567-e89b-12d3-a456-426614174000",
		"no refreshApiUserLoginToken in the answer":         "no refreshApiUserLoginToken in the answer",
		"INTERNAL_SERVER_ERROR at api.inabit.com":           "INTERNAL_SERVER_ERROR at api.inabit.com",
		"long run " + strings.Repeat("A", 30) + "1 end":     "long run [redacted] end",
		"bare signature c2lnbmF0dXJlc2lnbmF0dXJl end":       "bare signature [redacted] end",
		"wrapped signature c2lnbmF0dX\nJlc2lnbmF0dXJl\nend": "wrapped signature [redacted]",
	}
	for in, want := range cases {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// leakedPiece returns a substring of length 8 of any of secrets found in s, or "".
func leakedPiece(s string, secrets ...string) string {
	for _, secret := range secrets {
		for i := 0; i+8 <= len(secret); i++ {
			if strings.Contains(s, secret[i:i+8]) {
				return secret[i : i+8]
			}
		}
	}
	return ""
}

// wrappedTokenBody builds, from seed, a random JWT wrapped at random columns with random line
// endings and indentation, embedded in an HTML or JSON error body.
func wrappedTokenBody(seed int64) (status int, contentType, body, payload, sig string) {
	r := rand.New(rand.NewSource(seed))
	enc := base64.RawURLEncoding
	randSeg := func(minLen, maxLen int) string {
		b := make([]byte, minLen+r.Intn(maxLen-minLen+1))
		r.Read(b)
		return enc.EncodeToString(b)
	}
	header := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	payload = randSeg(12, 200)
	sig = randSeg(32, 64)
	tok := header + "." + payload + "." + sig

	endings := []string{"\n", "\r\n", "\r", `\n`, `\r\n`}
	indents := []string{"", " ", "  ", "\t", "    ", " \t"}
	var w strings.Builder
	for len(tok) > 0 {
		n := 1 + r.Intn(80)
		if n > len(tok) {
			n = len(tok)
		}
		w.WriteString(tok[:n])
		tok = tok[n:]
		if len(tok) > 0 {
			if r.Intn(3) == 0 {
				w.WriteString(indents[r.Intn(len(indents))])
			}
			w.WriteString(endings[r.Intn(len(endings))])
			w.WriteString(indents[r.Intn(len(indents))])
		}
	}
	wrapped := w.String()
	status = []int{200, 400, 401, 403, 404, 500, 502, 503}[r.Intn(8)]
	switch r.Intn(4) {
	case 0:
		return status, "text/html", "<html><head><title>Invalid token " + wrapped + "</title></head><body>" + wrapped + "</body></html>", payload, sig
	case 1:
		return status, "text/html", "<html><title>\n" + wrapped + "\n</title></html>", payload, sig
	case 2:
		return status, "application/json", `{"message":"token ` + wrapped + ` is not valid"}`, payload, sig
	default:
		return status, "application/json", `{"errors":[{"message":"bad bearer ` + wrapped + `"}]}`, payload, sig
	}
}

func checkWrappedTokenRedacted(t *testing.T, seed int64) {
	t.Helper()
	status, contentType, body, payload, sig := wrappedTokenBody(seed)
	if leak := leakedPiece(Redact(body), payload, sig); leak != "" {
		t.Fatalf("seed %d: Redact(%q) leaks %q", seed, body, leak)
	}
	for _, c := range bothCalls {
		_, notes, err := c.do(answering(status, http.Header{"Content-Type": {contentType}}, []byte(body)))
		if err == nil {
			t.Fatalf("seed %d: %s succeeded on %q", seed, c.name, body)
		}
		if leak := leakedPiece(err.Error()+notes, payload, sig); leak != "" {
			t.Fatalf("seed %d: HTTP %d %q\n%s error %q leaks %q", seed, status, body, c.name, err.Error(), leak)
		}
	}
}

func TestRedact_WrappedTokensNeverSurviveInErrors(t *testing.T) {
	for seed := int64(0); seed < 300; seed++ {
		checkWrappedTokenRedacted(t, seed)
	}
}

// FuzzRedactWrappedToken: for any random JWT wrapped at random columns with random line endings
// in an HTML or JSON error body, no 8-character piece of its payload or signature reaches an
// error's text.
func FuzzRedactWrappedToken(f *testing.F) {
	for _, seed := range []int64{1, 2, 3, 42, 1 << 40} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, seed int64) { checkWrappedTokenRedacted(t, seed) })
}

// TestRedact_LetterOnlyRunsFromFortyCharacters: a base64url run without a digit is redacted
// from 40 characters (a JWT signature is 43 or more), and kept below that, like an identifier.
func TestRedact_LetterOnlyRunsFromFortyCharacters(t *testing.T) {
	run39, run40 := strings.Repeat("Ab", 19)+"c", strings.Repeat("Ab", 20)
	cases := map[string]string{
		"sig " + run39 + " end":     "sig " + run39 + " end",
		"sig " + run40 + " end":     "sig [redacted] end",
		"sig " + run40 + "_-x end":  "sig [redacted] end",
		"sig " + run39 + "7 end":    "sig [redacted] end",
		"id " + run39[:22] + "1 ok": "id " + run39[:22] + "1 ok", // 23 with a digit: too short to be a token's piece
		"id " + run39[:23] + "1 ok": "id [redacted] ok",          // 24 with a digit is the shortest redacted run
	}
	for in, want := range cases {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSanitize_KeepsTwoHundredCharacters: a detail of up to maxDetail characters is kept whole;
// a longer one is cut there and marked.
func TestSanitize_KeepsTwoHundredCharacters(t *testing.T) {
	at := strings.Repeat("x ", maxDetail/2-1) + "yz"
	if got := sanitize(at); got != at {
		t.Errorf("a %d-character detail was changed: %q", len(at), got)
	}
	if got, want := sanitize(at+"!"), at+"…"; got != want {
		t.Errorf("a %d-character detail: %q, want %q", len(at)+1, got, want)
	}
	if got := sanitize(" \x1b[31mred\x7f\t"); got != "[31mred" {
		t.Errorf("control characters: %q", got)
	}
}
