package inabitapi

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net/http"
	"strings"
	"testing"
)

// Whatever answers a call (inabit, a proxy, or an internal service someone pointed url at), the
// error says its status and what kind of answer it was, never what it said: an error text is
// returned to whoever wrote config, and a quote would let them read internal services.
func TestErrors_NeverQuoteTheAnswerBody(t *testing.T) {
	const secret = "s3cretInternalValue"
	bodies := []string{
		"<html><head><title>" + secret + "</title></head></html>",
		"<html><body>" + secret + "</body></html>",
		`{"message":"` + secret + `"}`,
		`{"data":{"other":"` + secret + `"}}`,
		`{"errors":[{"message":"` + secret + `"}]}`,
		`{"errors":[{"message":"Unauthorized ` + secret + `"}]}`,
		`{"errors":[{"message":"` + secret + `","extensions":{"code":"UNAUTHENTICATED"}}]}`,
		`{"errors":[{"message":"x","extensions":{"code":"` + secret + `"}}]}`,
		`{"errors":[{"message":"` + secret + `","extensions":{"code":"FORBIDDEN"}}]}`,
		`{"data":null,"errors":[{"message":"` + secret + `"}]}`,
		secret,
		"plain text " + secret,
		`{"data":{"getApiUserAccessToken":7,"refreshApiUserLoginToken":{"x":"` + secret + `"}}}`,
	}
	rng := rand.New(rand.NewSource(1))
	statuses := []int{200, 201, 301, 400, 401, 403, 404, 409, 418, 422, 500, 502, 503}
	for _, body := range bodies {
		for _, status := range statuses {
			for _, call := range []string{"access", "refresh"} {
				header := http.Header{}
				if rng.Intn(2) == 0 {
					header.Set("Content-Type", "application/json")
				} else {
					header.Set("Content-Type", "text/html")
				}
				c := answering(status, header, []byte(body))
				var err error
				if call == "access" {
					_, err = c.AccessToken(context.Background(), "login")
				} else {
					_, _, err = c.RefreshLoginToken(context.Background(), "login")
				}
				if err == nil {
					continue
				}
				if strings.Contains(strings.ToLower(err.Error()), strings.ToLower(secret)) {
					t.Errorf("%s, HTTP %d, body %q: error quotes the body: %v", call, status, body, err)
				}
				if s := fmt.Sprintf("%+v", err); strings.Contains(strings.ToLower(s), strings.ToLower(secret)) {
					t.Errorf("%s, HTTP %d, body %q: %%+v quotes the body", call, status, body)
				}
			}
		}
	}
}

// What an answer said reaches the log only when it said something: an empty 502 leaves Said
// empty, not a made-up "an error without a message".
func TestErrors_SaidIsEmptyWhenTheAnswerSaidNothing(t *testing.T) {
	_, err := answering(502, nil, nil).AccessToken(context.Background(), "login")
	var ue *Error
	if !errors.As(err, &ue) || ue.Said != "" {
		t.Fatalf("err = %v, Said = %q; want an *Error with nothing in Said", err, ue.Said)
	}
}
