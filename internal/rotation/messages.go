package rotation

import (
	"fmt"
	"time"
)

// FormatTime is how every time reaches an operator: RFC 3339 in UTC, empty for zero.
func FormatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// Message is the operator's text for o, stored as last_rotation_error, logged, sent in the fail
// event and returned by rotate-root. configPath names the real mount ("inabit-admin/config").
// Tests match outcomes by Kind and Why, never by this prose.
func Message(o Outcome, configPath string) string {
	cause := ""
	if o.Cause != "" {
		cause = " (" + o.Cause + ")"
	}
	started, checkAt := FormatTime(o.StartedAt), FormatTime(o.CheckAt)
	switch o.Kind {
	case Lost:
		if o.Why == WhyRefresh && o.Answer != Rejected || o.Why == WhySettle {
			return fmt.Sprintf("LOGIN TOKEN LOST: inabit applied the login-token refresh started at %s, but its answer (the new token) "+
				"never reached Vault storage%s; inabit has killed the stored token. Ask inabit support for a new login token and write it to %s (login_token)",
				started, cause, configPath)
		}
		return fmt.Sprintf("LOGIN TOKEN LOST: inabit rejected the stored login token%s: it has expired, been revoked, or been refreshed "+
			"outside Vault. No refresh is sent with it again. Ask inabit support for a new login token and write it to %s (login_token)", cause, configPath)
	case Unchanged:
		return fmt.Sprintf("refreshing the login token failed%s; the login token is unchanged and still valid; retrying later", cause)
	case Pending:
		switch {
		case o.Why == WhyRefresh:
			return fmt.Sprintf("the login-token refresh started at %s got no answer from inabit itself%s: inabit may still apply it: outcome unknown, "+
				"checked again at %s. No refresh is sent until then and the stored login token stays in use; "+
				"if inabit did apply the refresh, the login token is reported lost then", started, cause, checkAt)
		case o.Cause != "":
			return fmt.Sprintf("the login-token refresh started at %s got no answer, and inabit cannot be asked whether it was applied%s: "+
				"its outcome unknown, checked again at %s; no refresh is sent until then", started, cause, checkAt)
		default:
			return fmt.Sprintf("a login-token refresh started at %s (on this node or one that has since stopped) may still be applied by inabit: "+
				"its outcome unknown, checked again at %s; no refresh is sent until then", started, checkAt)
		}
	case Unconfirmed:
		if o.Why == WhyVerify {
			return fmt.Sprintf("the login token was rotated, but inabit has not confirmed that the new token works%s; "+
				"it is stored and in use, and inabit is asked again at the next tick (a rejection confirmed then is reported as LOGIN TOKEN LOST)", cause)
		}
		if o.Why == WhyRefresh {
			return fmt.Sprintf("refreshing the login token failed%s and inabit could not be asked whether the login token still works; "+
				"no refresh is sent with it until inabit confirms it works", cause)
		}
		switch {
		case o.Answer == Rejected:
			return fmt.Sprintf("inabit rejected the stored login token once%s; it is asked again at the next tick, and nothing is sent "+
				"with it until inabit confirms either way (twice rejected is LOGIN TOKEN LOST)", cause)
		case o.SeenRejected:
			return fmt.Sprintf("inabit rejected the stored login token on an earlier call and cannot be asked now whether it still works%s; "+
				"not refreshing until it can", cause)
		default:
			return fmt.Sprintf("inabit has not yet confirmed that the stored login token works and cannot be asked now%s; "+
				"not refreshing until it can", cause)
		}
	case Skipped:
		if o.Why == WhySave {
			return fmt.Sprintf("a previously rotated login token is still not saved to storage%s; not rotating again until it is", cause)
		}
		if o.Why == WhyRecords {
			return fmt.Sprintf("storage is not writable%s; inabit was not called and the login token is unchanged", cause)
		}
		return fmt.Sprintf("inabit could not be asked whether the login token works before refreshing it%s; "+
			"no refresh was sent and the login token is unchanged; retrying later", cause)
	case Held:
		return fmt.Sprintf("the login token was rotated at %s but saving it to storage failed%s. "+
			"The new token is held in memory on the active node and used for every read; saving is retried every minute. "+
			"Until it is saved, a restart or failover of the active node loses it.", started, cause)
	case Dropped:
		return fmt.Sprintf("inabit issued a new login token at %s, but this node stopped being the active node before it was saved%s: "+
			"the new token is gone with this node, and inabit has killed the stored one. The active node reports LOGIN TOKEN LOST "+
			"once it settles this rotation (after refresh_grace_period); then write a new login token to %s (login_token)", started, cause, configPath)
	case Settled:
		return "an unfinished login-token refresh was not applied: the login token still works"
	default:
		return "login token rotated"
	}
}

// InFlightMessage is the status written before a refresh is sent: it stands if the node dies
// before inabit's answer is saved.
func InFlightMessage(startedAt, checkAt time.Time) string {
	return fmt.Sprintf("a login-token refresh started at %s; if this status stays, Vault stopped before inabit's answer was saved: "+
		"outcome unknown, checked again at %s", FormatTime(startedAt), FormatTime(checkAt))
}

// ScheduleWarning says, to every token reader, when the login token's expiry overrides the
// operator's rotation_period or rotation_schedule, or when the token lives too short to be
// rotated in time; empty otherwise. mount is "inabit-admin/".
func ScheduleWarning(set Settings, st Status, tok Token, now time.Time, mount string) string {
	if set.DisableAutomatedRotation || st.LoginTokenLost {
		return ""
	}
	b := set.Budget()
	if TooShortLived(tok, b) {
		return ShortLivedWarning(tok, b, mount)
	}
	deadline := ExpiryDeadline(tok, b)
	if deadline.IsZero() {
		return ""
	}
	if set.RotationSchedule == "" {
		life := tok.Lifetime()
		if life <= 0 || life >= set.RotationPeriod {
			return ""
		}
		return fmt.Sprintf("the inabit login token lives %s, shorter than rotation_period (%s): it is rotated at %s, before it expires; "+
			"set rotation_period below its lifetime in %sconfig to rotate on your own terms.", life.Truncate(time.Second), set.RotationPeriod, FormatTime(deadline), mount)
	}
	if slot := ScheduledAt(set, tok, now); slot.IsZero() || slot.After(deadline) {
		return fmt.Sprintf("the next rotation_schedule slot (%s) comes after the inabit login token must be rotated (it expires at %s): "+
			"it is rotated at %s instead.", FormatTime(slot), FormatTime(tok.ExpiresAt), FormatTime(deadline))
	}
	return ""
}

// NoPolicyWarning says, at a config write, that neither rotation_period nor rotation_schedule is
// set (Vault's rotation_period=0): only the expiry deadline rotates the token, or nothing when it
// has no exp. Empty otherwise. mount is "inabit-admin/".
func NoPolicyWarning(set Settings, tok Token, mount string) string {
	if set.DisableAutomatedRotation || set.RotationSchedule != "" || set.RotationPeriod > 0 {
		return ""
	}
	deadline := ExpiryDeadline(tok, set.Budget())
	if deadline.IsZero() {
		return fmt.Sprintf("rotation_period is 0 and no rotation_schedule is set, and the login token has no expiry: nothing rotates it "+
			"on its own. Set rotation_period (360h suits 30-day tokens) or rotation_schedule in %sconfig, or rotate it with %srotate-root.", mount, mount)
	}
	return fmt.Sprintf("rotation_period is 0 and no rotation_schedule is set (Vault's \"not set\"): the login token is rotated only at %s, "+
		"%s before it expires. Set rotation_period (360h suits 30-day tokens) or rotation_schedule in %sconfig to rotate it earlier, "+
		"or disable_automated_rotation=true to rotate it only with rotate-root.", FormatTime(deadline), ExpiryMargin(tok, set.Budget()), mount)
}

// ShortLivedWarning is the warning for a token that TooShortLived.
func ShortLivedWarning(tok Token, b Budget, mount string) string {
	return fmt.Sprintf("the inabit login token lives %s, too short to be rotated reliably before it expires: Vault runs rotation once a "+
		"minute and a refresh may take request_timeout + %s, so a token needs at least %s to live; ask inabit for longer-lived login tokens, "+
		"or lower request_timeout in %sconfig.", tok.Lifetime().Truncate(time.Second), CallSlack, b.MinExpiryMargin(), mount)
}
