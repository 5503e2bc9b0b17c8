package inabitapi

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The address a call actually dials decides, not the url's text: a link-local or cloud-metadata
// address is never dialled, whatever name led there.
func TestDialPolicy_RefusesLinkLocalAndMetadataAddresses(t *testing.T) {
	refused := []string{
		"169.254.169.254:443", "169.254.170.2:80", "[fe80::1]:443", "[fd00:ec2::254]:443",
		"100.100.100.200:443", "[::ffff:169.254.169.254]:443", "[64:ff9b::a9fe:a9fe]:443",
		"0.0.0.0:443", "[::]:443", "224.0.0.1:443", "[ff02::1]:443",
	}
	for _, addr := range refused {
		if err := checkDialAddress(addr, false); err == nil {
			t.Errorf("%s: dialled", addr)
		}
	}
	for _, addr := range []string{"127.0.0.1:443", "[::1]:443", "203.0.113.7:443", "10.1.2.3:443", "[2001:db8::1]:443"} {
		if err := checkDialAddress(addr, false); err != nil {
			t.Errorf("%s: refused over https: %v", addr, err)
		}
	}
}

// http:// is for a local test inabit only: the address dialled must be loopback, whatever the
// name resolved to.
func TestDialPolicy_PlainHTTPDialsOnlyLoopback(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:80", "127.9.9.9:80", "[::1]:80"} {
		if err := checkDialAddress(addr, true); err != nil {
			t.Errorf("%s: refused over http: %v", addr, err)
		}
	}
	for _, addr := range []string{"10.0.0.5:80", "192.168.1.1:8080", "[2001:db8::1]:80", "203.0.113.7:80"} {
		if err := checkDialAddress(addr, true); err == nil {
			t.Errorf("%s: dialled over http", addr)
		}
	}
}

// End to end through the real dialer: a client for an http:// url whose host is a non-loopback
// address of this machine never connects, and says why without having sent anything.
func TestCalls_PlainHTTPToANonLoopbackAddressIsNeverSent(t *testing.T) {
	ip := nonLoopbackAddress(t)
	got := make(chan struct{}, 1)
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Skipf("cannot listen on %s: %v", ip, err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- struct{}{} }))
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	c := New(srv.URL+"/graphql", 2*time.Second, WithoutRetryWait())
	_, err = c.AccessToken(context.Background(), "login")
	var ue *Error
	if !errors.As(err, &ue) || ue.Sent || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("err = %v, want a refusal to dial that says http:// needs loopback", err)
	}
	select {
	case <-got:
		t.Fatal("the request reached the server")
	default:
	}
	// And a metadata address over https is refused before any connection is tried.
	_, _, err = New("https://169.254.169.254/latest", 2*time.Second).RefreshLoginToken(context.Background(), "login")
	if !errors.As(err, &ue) || ue.Sent || !strings.Contains(err.Error(), "link-local") {
		t.Fatalf("err = %v, want a refusal to dial a link-local address", err)
	}
}

func nonLoopbackAddress(t *testing.T) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skip(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	t.Skip("no non-loopback IPv4 address on this machine")
	return ""
}
