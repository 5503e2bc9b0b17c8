package inabit

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// tokenClaims are the only JWT facts the plugin uses: when a token was issued and when it dies.
// Zero values mean the claim is absent.
type tokenClaims struct {
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// lifetime is exp-iat, or zero when either is unknown.
func (c tokenClaims) lifetime() time.Duration {
	if c.IssuedAt.IsZero() || c.ExpiresAt.IsZero() {
		return 0
	}
	return c.ExpiresAt.Sub(c.IssuedAt)
}

var errNotJWT = errors.New("not a JWT (expected three base64url parts separated by dots)")

// parseClaims reads iat and exp without verifying the signature: Vault cannot know inabit's key,
// and the claims only drive TTLs and schedules, never authorization.
func parseClaims(token string) (tokenClaims, error) {
	var claims jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &claims); err != nil {
		// The library's message can quote token segments; keep only what kind of failure it was.
		switch {
		case errors.Is(err, jwt.ErrTokenMalformed):
			return tokenClaims{}, errNotJWT
		default:
			return tokenClaims{}, fmt.Errorf("unreadable JWT claims: %w", jwt.ErrTokenMalformed)
		}
	}
	var out tokenClaims
	if claims.IssuedAt != nil {
		out.IssuedAt = claims.IssuedAt.UTC()
	}
	if claims.ExpiresAt != nil {
		out.ExpiresAt = claims.ExpiresAt.UTC()
	}
	return out, nil
}
