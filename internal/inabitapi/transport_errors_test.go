package inabitapi

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// rawService listens on loopback and answers every connection with reply after reading the
// request's head: an internal, non-inabit service someone with config write pointed url at.
func rawService(t *testing.T, reply string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(3 * time.Second))
				r := bufio.NewReader(c)
				for { // the request's head
					line, err := r.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				_, _ = c.Write([]byte(reply))
			}(c)
		}
	}()
	return ln.Addr().String()
}

// an error returned to whoever wrote config never quotes what answered. The body is
// covered (statusTransport), but net/http's own parse errors quote the answer's first line or a
// header line, and classify's default branch copies them into Error.Detail: http://127.0.0.1:<port>
// (allowed: loopback) reads the banner of any local TCP service (ssh, smtp, an internal HTTP
// service with a bad header).
func TestErrors_NeverQuoteANonHTTPAnswer(t *testing.T) {
	const secret = "s3cretInternalValue"
	replies := map[string]string{
		"a line without spaces": `{"db_password":"` + secret + `"}` + "\n",
		"ssh banner":            "SSH-2.0-OpenSSH_9.6 " + secret + "\r\n",
		"smtp greeting":         "220 " + secret + " ESMTP ready\r\n",
		"bad status code":       "HTTP/1.1 " + secret + " OK\r\n\r\n",
		"header without colon":  "HTTP/1.1 200 OK\r\n" + secret + " no colon here\r\n\r\n",
		"bad content-length":    "HTTP/1.1 200 OK\r\nContent-Length: " + secret + "\r\n\r\n",
		"transfer-encoding":     "HTTP/1.1 200 OK\r\nTransfer-Encoding: " + secret + "\r\n\r\n",
	}
	for name, reply := range replies {
		t.Run(name, func(t *testing.T) {
			addr := rawService(t, reply)
			c := New("http://"+addr+"/graphql", 2*time.Second, WithoutRetryWait())
			_, err := c.AccessToken(context.Background(), "login")
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("the error returned to the caller quotes the service's answer: %v", err)
			}
		})
	}
}

// over https, a certificate's names are what the server said too: the error quotes
// every DNS name of an internal service's certificate ("x509: certificate is valid for ...").
func TestErrors_NeverQuoteTheServersCertificateNames(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.StartTLS() // httptest's certificate is valid for example.com and 127.0.0.1/::1
	defer srv.Close()
	// Reach it by a name the certificate does not hold, as url pointing at an internal host would.
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	c := New("https://localhost:"+port+"/graphql", 2*time.Second, WithoutRetryWait())
	_, err := c.AccessToken(context.Background(), "login")
	if err == nil {
		t.Fatal("no error")
	}
	if strings.Contains(err.Error(), "example.com") {
		t.Errorf("the error returned to the caller lists the server certificate's names: %v", err)
	}
}
