package inabitapi

// Tests of shared.go: the clients of every mount in the process share one network transport per
// request timeout and dial policy, so an idle connection to inabit serves them all (issue 19).

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// connCounter is a loopback server that counts the connections it accepted and those still open.
type connCounter struct {
	srv            *httptest.Server
	mu             sync.Mutex
	accepted, open int
}

func newConnCounter(t *testing.T, h http.Handler) *connCounter {
	c := &connCounter{}
	c.srv = httptest.NewUnstartedServer(h)
	c.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		c.mu.Lock()
		defer c.mu.Unlock()
		switch st {
		case http.StateNew:
			c.accepted++
			c.open++
		case http.StateClosed, http.StateHijacked:
			c.open--
		}
	}
	c.srv.Start()
	t.Cleanup(c.srv.Close)
	return c
}

func (c *connCounter) counts() (accepted, open int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.accepted, c.open
}

func accessTokenAnswer() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"data":{"getApiUserAccessToken":"tok"}}`))
	})
}

func TestNew_ClientsWithTheSameTimeoutAndPolicyShareATransport(t *testing.T) {
	a := New("http://127.0.0.1:1/graphql", 7*time.Second)
	b := New("http://127.0.0.1:2/other", 7*time.Second)
	c := New("http://127.0.0.1:1/graphql", 8*time.Second)
	d := New("https://127.0.0.1:1/graphql", 7*time.Second)
	defer func() {
		for _, x := range []*Client{a, b, c, d} {
			x.CloseIdle()
		}
	}()
	if a.transport() == nil || a.transport() != b.transport() {
		t.Fatal("two clients with one timeout and one policy have their own transports")
	}
	if c.transport() == a.transport() {
		t.Fatal("a client with another request timeout shares the transport: its dial, handshake and header timeouts would be wrong")
	}
	if d.transport() == a.transport() {
		t.Fatal("an https client shares the http client's transport: the loopback-only dial policy would apply to it, or not to the other")
	}
	tr := a.transport()
	if tr.DialContext == nil || tr.TLSHandshakeTimeout != 7*time.Second || tr.ResponseHeaderTimeout != 7*time.Second ||
		tr.MaxIdleConnsPerHost != 4 || tr.IdleConnTimeout != 90*time.Second || tr.Protocols == nil || tr.Protocols.HTTP2() || !tr.Protocols.HTTP1() {
		t.Fatalf("shared transport settings: %+v", tr)
	}
	if injected := New("http://127.0.0.1:1/graphql", 7*time.Second, WithTransport(http.DefaultTransport)); injected.transport() != nil {
		t.Fatal("a client given its own transport took a shared one")
	}
}

// Mounts calling one after another reuse one connection instead of each keeping its own idle.
func TestClientsShareIdleConnections(t *testing.T) {
	srv := newConnCounter(t, accessTokenAnswer())
	// A timeout no other test uses, so that this test's transport is its own.
	const timeout = 3*time.Second + 17*time.Millisecond
	var clients []*Client
	for i := 0; i < 10; i++ {
		c := New(srv.srv.URL+"/graphql", timeout)
		clients = append(clients, c)
		if tok, err := c.AccessToken(context.Background(), "login"); err != nil || tok != "tok" {
			t.Fatalf("client %d: %q %v", i, tok, err)
		}
	}
	if accepted, _ := srv.counts(); accepted != 1 {
		t.Fatalf("10 clients one after another opened %d connections, want 1 shared", accepted)
	}
	// Releasing some clients keeps the others' connection; the last one closes it.
	for _, c := range clients[:9] {
		c.CloseIdle()
		c.CloseIdle() // twice is once
	}
	if _, open := srv.counts(); open != 1 {
		t.Fatalf("%d connections open while a client still uses the transport, want 1", open)
	}
	if tok, err := clients[9].AccessToken(context.Background(), "login"); err != nil || tok != "tok" {
		t.Fatalf("the remaining client: %q %v", tok, err)
	}
	clients[9].CloseIdle()
	waitFor(t, func() bool { _, open := srv.counts(); return open == 0 }, "the last client's release to close the idle connection")
	if n := sharedClients(transportKey{timeout: timeout, loopbackOnly: true}); n != 0 {
		t.Fatalf("the shared transport still counts %d clients after every client was released", n)
	}
	// A client released while a call is in flight still finishes it.
	c := New(srv.srv.URL+"/graphql", timeout)
	c.CloseIdle()
	if tok, err := c.AccessToken(context.Background(), "login"); err != nil || tok != "tok" {
		t.Fatalf("a released client: %q %v", tok, err)
	}
}

// Sharing changes neither timeout: each client's calls end after its own request_timeout.
func TestSharedTransportKeepsEachClientsTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := newConnCounter(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer close(release)
	short := New(srv.srv.URL, time.Second, WithoutRetryWait())
	long := New(srv.srv.URL, 4*time.Second, WithoutRetryWait())
	defer short.CloseIdle()
	defer long.CloseIdle()
	for _, c := range []struct {
		client *Client
		want   time.Duration
	}{{short, time.Second}, {long, 4 * time.Second}} {
		start := time.Now()
		_, _, err := c.client.RefreshLoginToken(context.Background(), "login")
		took := time.Since(start)
		var ue *Error
		if !errors.As(err, &ue) || !errors.Is(ue, ErrUnavailable) || took < c.want || took > c.want+3*time.Second {
			t.Fatalf("timeout %s: err %v after %s", c.want, err, took)
		}
	}
}

// The dial policy still holds per client: an http:// url may only reach loopback, even when an
// https client with the same timeout is about.
func TestSharedTransportKeepsTheDialPolicy(t *testing.T) {
	other := New("https://example.invalid/graphql", 2*time.Second)
	defer other.CloseIdle()
	c := New("http://192.0.2.1:9/graphql", 2*time.Second, WithoutRetryWait())
	defer c.CloseIdle()
	_, err := c.AccessToken(context.Background(), "login")
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("http:// to a non-loopback address: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
	}
}
