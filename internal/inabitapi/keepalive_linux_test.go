package inabitapi

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"syscall"
	"testing"
	"time"
)

// TestNew_NetworkConnectionsProbeTheirPeerEveryThirtySeconds: the client's own connections send
// TCP keep-alives after 30 s idle, so a pooled connection to a vanished inabit is found dead.
func TestNew_NetworkConnectionsProbeTheirPeerEveryThirtySeconds(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"data":{"getApiUserAccessToken":"tok"}}`))
	}))
	defer srv.Close()
	c := New(srv.URL, 2*time.Second)
	defer c.CloseIdle()
	var conn net.Conn
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { conn = i.Conn }})
	if tok, err := c.AccessToken(ctx, "login"); err != nil || tok != "tok" {
		t.Fatalf("tok=%q err=%v", tok, err)
	}
	tcp, ok := conn.(*net.TCPConn)
	if !ok {
		t.Fatalf("connection %T, want TCP", conn)
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var on, idle int
	var sockErr error
	if err := raw.Control(func(fd uintptr) {
		if on, sockErr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE); sockErr == nil {
			idle, sockErr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE)
		}
	}); err != nil || sockErr != nil {
		t.Fatal(err, sockErr)
	}
	if on == 0 || idle != 30 {
		t.Fatalf("keep-alive on=%d idle=%ds, want on after 30 s", on, idle)
	}
}
