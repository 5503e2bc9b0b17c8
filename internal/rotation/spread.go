package rotation

import "time"

// Spreading a herd. Mounts whose tokens were issued together, or that share one
// rotation_schedule, come due in the same minute; hundreds of refreshes sent at once look like an
// attack to inabit and would be rate-limited together. So, when one plugin process serves many
// mounts, each token's rotation is put off by its own offset within a window its policy allows,
// and never past its expiry deadline (Plan applies the deadline after the spread).

const (
	// MaxSpread bounds the offset: a rotation is put off by less than this.
	MaxSpread = 15 * time.Minute
	// SpreadMinMounts is how many mounts one process must serve before rotations are spread: a
	// handful of mounts is no herd, and a lone mount rotates exactly when its policy says.
	SpreadMinMounts = 10
)

// SpreadWindow is how far a token's due rotation may be put off under set: a tenth of
// rotation_period; with rotation_schedule, half the rotation_window (so the slot is still within
// the window when the rotation runs); and MaxSpread at most. Zero for a schedule without a window:
// its slots are exact times the operator chose.
func SpreadWindow(set Settings) time.Duration {
	var w time.Duration
	switch {
	case set.RotationSchedule == "":
		w = set.RotationPeriod / 10
	case set.RotationWindow > 0:
		w = set.RotationWindow / 2
	}
	return max(min(w, MaxSpread), 0)
}

// Spread is the offset of the token identified by key (any well-mixed value fixed for the
// token's life, the same on every node) when mounts mounts share the process: below
// SpreadMinMounts none, else key spread evenly over SpreadWindow.
func Spread(set Settings, key uint64, mounts int) time.Duration {
	w := SpreadWindow(set)
	if mounts < SpreadMinMounts || w <= 0 {
		return 0
	}
	return time.Duration(key % uint64(w))
}
