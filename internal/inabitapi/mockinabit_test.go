package inabitapi

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

// Against a real GraphQL server (the mock inabit): a refresh hands back a new login token that
// works, the old one is then inabit's own UNAUTHENTICATED, and a partial answer keeps its token.
func TestCalls_AgainstARealGraphQLServer(t *testing.T) {
	m, srv := mockinabit.NewHTTPTest(mockinabit.Options{})
	defer srv.Close()
	c := New(srv.URL, 2*time.Second, WithoutRetryWait())
	defer c.CloseIdle()
	ctx := context.Background()
	old := m.LoginToken()

	if tok, err := c.AccessToken(ctx, old); err != nil || !m.AccessTokenValid(tok) {
		t.Fatalf("access token with the login token: %q, %v", tok, err)
	}
	newTok, notes, err := c.RefreshLoginToken(ctx, old)
	if err != nil || notes != "" || newTok == old || !m.LoginTokenValid(newTok) {
		t.Fatalf("refresh: %q, %q, %v", newTok, notes, err)
	}
	_, err = c.AccessToken(ctx, old)
	var ue *Error
	if !errors.As(err, &ue) || !errors.Is(err, ErrUnauthorized) || !ue.Answered || ue.MayStillApply() {
		t.Fatalf("access token with the killed token: %v, want inabit's own ErrUnauthorized", err)
	}
	if _, _, err := c.RefreshLoginToken(ctx, old); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("refresh with the killed token: %v, want ErrUnauthorized", err)
	}

	m.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultPartial, Code: "INTERNAL", Message: "audit log write failed", Times: 1})
	latest, notes, err := c.RefreshLoginToken(ctx, newTok)
	if err != nil || latest != m.LoginToken() || notes == "" {
		t.Fatalf("partial answer: %q, %q, %v; want the new token and the error text", latest, notes, err)
	}
}
