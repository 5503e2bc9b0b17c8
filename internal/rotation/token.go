package rotation

import "time"

// Token is what the protocol knows of a login token: its claims (zero when absent) and when Vault
// got it, which stands in for iat when there is none.
type Token struct {
	// IssuedAt is the iat claim; zero when absent.
	IssuedAt time.Time
	// ExpiresAt is the exp claim; zero when absent.
	ExpiresAt time.Time
	// StoredAt is when Vault got the token: written to config or rotated.
	StoredAt time.Time
	// Spread puts its policy's due rotation off by this much, so that many mounts due together
	// do not call inabit at once (see Spread); never past the expiry deadline.
	Spread time.Duration
}

// BornAt is when the token's age starts: its iat, else when Vault stored it.
func (t Token) BornAt() time.Time {
	if !t.IssuedAt.IsZero() {
		return t.IssuedAt
	}
	return t.StoredAt
}

// Lifetime is exp minus BornAt, or zero when the token has no exp.
func (t Token) Lifetime() time.Duration {
	if t.ExpiresAt.IsZero() || t.BornAt().IsZero() {
		return 0
	}
	return t.ExpiresAt.Sub(t.BornAt())
}
