package inabitapi

import (
	"bytes"
	"context"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// http2Server answers both queries over TLS with HTTP/2 enabled, as inabit's edge may.
func http2Server(t *testing.T) *httptest.Server {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"data":{"getApiUserAccessToken":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"}}`))
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func trusting(t *testing.T, srv *httptest.Server) *http.Transport {
	tr := networkTransport(5*time.Second, true)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	tr.TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	tr.TLSClientConfig.RootCAs = pool
	return tr
}

// TestTalksHTTP1ToInabitEvenWhenItOffersHTTP2: the network transport never negotiates HTTP/2.
func TestTalksHTTP1ToInabitEvenWhenItOffersHTTP2(t *testing.T) {
	srv := http2Server(t)
	res, err := (&http.Client{Transport: trusting(t, srv)}).Post(srv.URL, "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.ProtoMajor != 1 {
		t.Fatalf("negotiated %s with a server offering HTTP/2", res.Proto)
	}
}

const secretLoginToken = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJsb2dpbiJ9.bG9naW4tdG9rZW4tc2VjcmV0"

// TestNoTokenOnStderrUnderHTTP2Debug runs a call in a child process with the GODEBUG a Vault
// operator might set, and reads its stderr: the bearer login token must not be there.
func TestNoTokenOnStderrUnderHTTP2Debug(t *testing.T) {
	if os.Getenv("INABITAPI_HTTP2DEBUG_CHILD") == "1" {
		srv := http2Server(t)
		c := New(srv.URL, 5*time.Second, WithTransport(trusting(t, srv)))
		if _, err := c.AccessToken(context.Background(), secretLoginToken); err != nil {
			t.Fatal(err)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestNoTokenOnStderrUnderHTTP2Debug$", "-test.count=1")
	cmd.Env = append(os.Environ(), "INABITAPI_HTTP2DEBUG_CHILD=1", "GODEBUG=http2debug=2")
	var stderr, stdout bytes.Buffer
	cmd.Stderr, cmd.Stdout = &stderr, &stdout
	if err := cmd.Run(); err != nil {
		t.Fatalf("child: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	if strings.Contains(stderr.String()+stdout.String(), "bG9naW4tdG9rZW4tc2VjcmV0") {
		t.Fatalf("the login token reached the plugin's output under GODEBUG=http2debug=2:\n%s", stderr.String())
	}
}
