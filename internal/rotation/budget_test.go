package rotation

import (
	"testing"
	"time"
)

// TestBudgetBoundsEveryCallFromRequestTimeout: each call gets request_timeout plus CallSlack, a
// probe its ProbeAttempts calls, and the settle wait counts the record latency, one call and the
// grace; the least expiry margin is two ticks and one call.
func TestBudgetBoundsEveryCallFromRequestTimeout(t *testing.T) {
	for _, tc := range []struct {
		timeout, grace                           time.Duration
		call, probe, settle, rotation, minMargin time.Duration
	}{
		{30 * time.Second, 10 * time.Minute, 32 * time.Second, 96 * time.Second, 10*time.Second + 32*time.Second + 10*time.Minute,
			2*96*time.Second + 32*time.Second + 30*time.Second, 2*time.Minute + 32*time.Second},
		{time.Second, 30 * time.Second, 3 * time.Second, 9 * time.Second, 43 * time.Second, 18*time.Second + 3*time.Second + 30*time.Second, 123 * time.Second},
		{5 * time.Minute, time.Hour, 302 * time.Second, 906 * time.Second, 10*time.Second + 302*time.Second + time.Hour,
			2*906*time.Second + 302*time.Second + 30*time.Second, 2*time.Minute + 302*time.Second},
	} {
		b := Settings{RequestTimeout: tc.timeout, RefreshGracePeriod: tc.grace}.Budget()
		if b.Call() != tc.call || b.Probe() != tc.probe || b.SettleAfter() != tc.settle || b.Rotation() != tc.rotation || b.MinExpiryMargin() != tc.minMargin {
			t.Errorf("request_timeout %s grace %s: call %s probe %s settle %s rotation %s min margin %s; want %s %s %s %s %s",
				tc.timeout, tc.grace, b.Call(), b.Probe(), b.SettleAfter(), b.Rotation(), b.MinExpiryMargin(),
				tc.call, tc.probe, tc.settle, tc.rotation, tc.minMargin)
		}
		if got, want := b.OutcomeCheckAt(t0), t0.Add(tc.settle); !got.Equal(want) {
			t.Errorf("outcome check at %s, want %s", FormatTime(got), FormatTime(want))
		}
	}
}

// TestExpiryMarginIsAQuarterOfTheLifeBetweenTheFloorAndADay: a token is rotated a quarter of its
// life before exp, at most a day before, never less than the budget's MinExpiryMargin before; a
// token with no exp, no birth or a birth after its exp gets the floor.
func TestExpiryMarginIsAQuarterOfTheLifeBetweenTheFloorAndADay(t *testing.T) {
	floor := budget.MinExpiryMargin() // 2m32s
	born := func(life time.Duration) Token { return Token{IssuedAt: t0, ExpiresAt: t0.Add(life)} }
	for _, tc := range []struct {
		name string
		tok  Token
		want time.Duration
	}{
		{"no exp", Token{IssuedAt: t0}, floor},
		{"no birth", Token{ExpiresAt: t0}, floor},
		{"exp before iat", born(-time.Hour), floor},
		{"a quarter under the floor", born(4*floor - 4*time.Second), floor},
		{"a quarter at the floor", born(4 * floor), floor},
		{"a quarter over the floor", born(4*floor + 4*time.Second), floor + time.Second},
		{"an hour", born(time.Hour), 15 * time.Minute},
		{"stored, no iat", Token{StoredAt: t0, ExpiresAt: t0.Add(8 * time.Hour)}, 2 * time.Hour},
		{"four days", born(4 * 24 * time.Hour), MaxExpiryMargin},
		{"just over four days", born(4*24*time.Hour + 4*time.Second), MaxExpiryMargin},
		{"a year", born(365 * 24 * time.Hour), MaxExpiryMargin},
	} {
		if got := ExpiryMargin(tc.tok, budget); got != tc.want {
			t.Errorf("%s: margin %s, want %s", tc.name, got, tc.want)
		}
	}
	if MaxExpiryMargin != 24*time.Hour {
		t.Errorf("MaxExpiryMargin = %s, want a day", MaxExpiryMargin)
	}
	if !ExpiryDeadline(Token{IssuedAt: t0}, budget).IsZero() {
		t.Error("a token without exp has an expiry deadline")
	}
	if got := ExpiryDeadline(born(time.Hour), budget); !got.Equal(t0.Add(45 * time.Minute)) {
		t.Errorf("one-hour token: deadline %s, want 45 minutes after iat", FormatTime(got))
	}
}

// TestTooShortLivedBelowTheMinExpiryMarginOnly: a token that lives less than MinExpiryMargin is
// too short-lived; one that lives exactly that long, or longer, is not, and a token without exp
// (no lifetime) never is.
func TestTooShortLivedBelowTheMinExpiryMarginOnly(t *testing.T) {
	floor := budget.MinExpiryMargin()
	for _, tc := range []struct {
		name string
		tok  Token
		want bool
	}{
		{"no exp", Token{IssuedAt: t0}, false},
		{"no exp, stored", Token{StoredAt: t0}, false},
		{"exp at birth", Token{IssuedAt: t0, ExpiresAt: t0}, false},
		{"exp before birth", Token{IssuedAt: t0, ExpiresAt: t0.Add(-time.Minute)}, false},
		{"one second", Token{IssuedAt: t0, ExpiresAt: t0.Add(time.Second)}, true},
		{"a nanosecond under the floor", Token{IssuedAt: t0, ExpiresAt: t0.Add(floor - time.Nanosecond)}, true},
		{"exactly the floor", Token{IssuedAt: t0, ExpiresAt: t0.Add(floor)}, false},
		{"over the floor", Token{IssuedAt: t0, ExpiresAt: t0.Add(floor + time.Second)}, false},
	} {
		if got := TooShortLived(tc.tok, budget); got != tc.want {
			t.Errorf("%s: too short-lived %v, want %v", tc.name, got, tc.want)
		}
	}
}
