package mockinabit

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// rawPost sends one query and returns the status, headers and the body exactly as written.
func rawPost(t *testing.T, url, token, query string) (int, http.Header, []byte) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"query": query})
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, raw
}

func queryOf(op Op) string { return "query { " + string(op) + " }" }

// TestOddShapesApplyTheCall: each odd answer still carries the real result of an applied call: a
// refresh makes the delivered token live and kills the old one; an access token is valid.
func TestOddShapesApplyTheCall(t *testing.T) {
	cases := []struct {
		kind  FaultKind
		check func(t *testing.T, raw []byte) map[string]any // returns the decoded answer
	}{
		{FaultErrorsNotList, func(t *testing.T, raw []byte) map[string]any {
			out := decode(t, raw)
			errs, ok := out["errors"].(map[string]any)
			if !ok || errs["message"] != "boom" {
				t.Fatalf("errors is not an object with the message: %s", raw)
			}
			return out
		}},
		{FaultErrorsMessageNotString, func(t *testing.T, raw []byte) map[string]any {
			out := decode(t, raw)
			errs, ok := out["errors"].([]any)
			if !ok || len(errs) != 1 {
				t.Fatalf("errors is not a one-entry list: %s", raw)
			}
			if _, isString := errs[0].(map[string]any)["message"].(string); isString {
				t.Fatalf("message is a string: %s", raw)
			}
			return out
		}},
		{FaultBOM, func(t *testing.T, raw []byte) map[string]any {
			if !bytes.HasPrefix(raw, []byte("\xEF\xBB\xBF{")) {
				t.Fatalf("no BOM before the JSON: %q", raw)
			}
			return decode(t, raw[3:])
		}},
		{FaultLeadingSpace, func(t *testing.T, raw []byte) map[string]any {
			if len(raw) == 0 || raw[0] == '{' || !strings.HasPrefix(strings.TrimSpace(string(raw)), "{") {
				t.Fatalf("no whitespace before the JSON: %q", raw)
			}
			return decode(t, raw)
		}},
		{FaultTrailingNewline, func(t *testing.T, raw []byte) map[string]any {
			if !bytes.Contains(raw, []byte(`\n"`)) {
				t.Fatalf("no escaped newline at the end of the token string: %s", raw)
			}
			return decode(t, raw)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.kind.String(), func(t *testing.T) {
			for _, op := range []Op{OpRefresh, OpAccessToken} {
				m, srv := NewHTTPTest(Options{})
				old := m.LoginToken()
				m.InjectFault(op, Fault{Kind: tc.kind, Message: "boom", Code: "INTERNAL", Times: 1})
				code, hdr, raw := rawPost(t, srv.URL, old, queryOf(op))
				if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
					t.Fatalf("%s: status %d, content type %q", op, code, hdr.Get("Content-Type"))
				}
				out := tc.check(t, raw)
				data, _ := out["data"].(map[string]any)
				tok, _ := data[string(op)].(string)
				if tc.kind == FaultTrailingNewline {
					if !strings.HasSuffix(tok, "\n") {
						t.Fatalf("%s: token %q lacks the newline", op, tok)
					}
					tok = strings.TrimSuffix(tok, "\n")
				}
				switch op {
				case OpRefresh:
					if tok == "" || tok == old || !m.LoginTokenValid(tok) || m.LoginTokenValid(old) {
						t.Fatalf("refresh not applied: delivered %q live %v, old live %v", tok, m.LoginTokenValid(tok), m.LoginTokenValid(old))
					}
				case OpAccessToken:
					if !m.AccessTokenValid(tok) || !m.LoginTokenValid(old) {
						t.Fatalf("access token %q not valid", tok)
					}
				}
				if got := drainApplied(m); got != 1 {
					t.Fatalf("%s: %d applied signals, want 1", op, got)
				}
				srv.Close()
			}
		})
	}
}

func decode(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("not JSON after the odd prefix: %v: %q", err, raw)
	}
	return out
}

// TestRefusalShapesDoNotApply: the gateway's bare 401 and the 429 with a ten-year Retry-After
// leave the login token live and rotate nothing.
func TestRefusalShapesDoNotApply(t *testing.T) {
	m, srv := NewHTTPTest(Options{})
	defer srv.Close()
	old := m.LoginToken()

	m.InjectFault(OpRefresh, Fault{Kind: FaultGateway401, Times: 1})
	code, hdr, raw := rawPost(t, srv.URL, old, queryOf(OpRefresh))
	if code != 401 || string(raw) != `{"message":"Unauthorized"}` || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("gateway 401 = %d %q %q", code, hdr.Get("Content-Type"), raw)
	}
	m.InjectFault(OpRefresh, Fault{Kind: FaultRetryAfterHuge, Times: 1})
	code, hdr, _ = rawPost(t, srv.URL, old, queryOf(OpRefresh))
	if code != 429 || hdr.Get("Retry-After") != "315360000" {
		t.Fatalf("429 = %d Retry-After %q", code, hdr.Get("Retry-After"))
	}
	m.InjectFault(OpAccessToken, Fault{Kind: FaultRetryAfterHuge, RetryAfter: "99999999999", Times: 1})
	if code, hdr, _ = rawPost(t, srv.URL, old, queryOf(OpAccessToken)); code != 429 || hdr.Get("Retry-After") != "99999999999" {
		t.Fatalf("429 with a given Retry-After = %d %q", code, hdr.Get("Retry-After"))
	}
	if !m.LoginTokenValid(old) || m.LoginToken() != old || drainApplied(m) != 0 || m.Rejected(OpRefresh) != 0 {
		t.Fatal("a refusal applied the refresh")
	}
	if code, out := post(t, srv.URL, old, queryOf(OpRefresh)); code != 200 || out["errors"] != nil {
		t.Fatalf("the token died: %v", out)
	}
}

// TestRevokeKillsTheLoginToken: after a revocation every call with the old token is GraphQL
// UNAUTHENTICATED, and IssueLoginToken brings a live one back.
func TestRevokeKillsTheLoginToken(t *testing.T) {
	m, srv := NewHTTPTest(Options{})
	defer srv.Close()
	old := m.LoginToken()
	m.RevokeLoginToken()
	if m.LoginToken() != "" || m.LoginTokenValid(old) || m.LoginTokenValid("") {
		t.Fatal("the revoked token is still live")
	}
	for _, op := range []Op{OpAccessToken, OpRefresh} {
		code, out := post(t, srv.URL, old, queryOf(op))
		errs, _ := out["errors"].([]any)
		if code != 200 || len(errs) != 1 || errs[0].(map[string]any)["extensions"].(map[string]any)["code"] != "UNAUTHENTICATED" {
			t.Fatalf("%s with the revoked token: %d %v", op, code, out)
		}
		if code, out := post(t, srv.URL, "", queryOf(op)); code != 200 || out["errors"] == nil {
			t.Fatalf("%s with no token after a revocation: %d %v", op, code, out)
		}
	}
	if m.Rejected(OpAccessToken) != 2 || m.Rejected(OpRefresh) != 2 {
		t.Fatalf("rejected %d/%d", m.Rejected(OpAccessToken), m.Rejected(OpRefresh))
	}
	fresh := m.IssueLoginToken()
	if !m.LoginTokenValid(fresh) || m.LoginTokenValid(old) {
		t.Fatal("IssueLoginToken after a revocation")
	}
}

func TestFaultKindNamesRoundTrip(t *testing.T) {
	for k := FaultStatus; k <= FaultRetryAfterHuge; k++ {
		name := k.String()
		if strings.HasPrefix(name, "FaultKind(") {
			t.Fatalf("kind %d has no wire name", k)
		}
		back, err := ParseFaultKind(name)
		if err != nil || back != k {
			t.Fatalf("%s -> %d %v", name, back, err)
		}
	}
	if _, err := ParseFaultKind("nope"); err == nil {
		t.Fatal("unknown kind accepted")
	}
}
