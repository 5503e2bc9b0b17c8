package inabit

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

// bannerService is a loopback TCP service that answers each connection with banner once it has
// read the request's head: ssh, smtp, or any internal non-HTTP service.
func bannerService(t *testing.T, banner string) string {
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
				for {
					line, err := r.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				_, _ = c.Write([]byte(banner))
			}(c)
		}
	}()
	return ln.Addr().String()
}

// End to end: whoever may update config writes a login token of their own and an
// http:// url on a loopback port (allowed, for a local test inabit); the 400 that refuses the
// write quotes what the service on that port said. Config write is thus a reader of the first
// line of any local TCP service.
func TestConfigWriteErrorDoesNotQuoteALocalService(t *testing.T) {
	const secret = "s3cretInternalValue"
	env := newTestEnv(t, mockinabit.Options{})
	addr := bannerService(t, "SSH-2.0-OpenSSH_9.6 "+secret+"\r\n")
	now := env.clock.now()
	tok := makeJWT(t, jwt.MapClaims{"sub": "attacker", "iat": now.Unix(), "exp": now.Add(30 * 24 * time.Hour).Unix()})
	resp, err := env.request(logical.UpdateOperation, "config", map[string]interface{}{
		"login_token": tok, "url": "http://" + addr + "/graphql", "verify_connection": true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp == nil || !resp.IsError() {
		t.Fatalf("write accepted: %v", resp)
	}
	if msg := resp.Error().Error(); strings.Contains(msg, secret) {
		t.Fatalf("the 400 quotes the local service's answer: %s", msg)
	}
}
