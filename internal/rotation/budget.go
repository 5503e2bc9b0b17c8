package rotation

import "time"

const (
	// CallSlack is what each call to inabit gets on top of request_timeout (DNS, TLS, the proxy):
	// a call's context ends request_timeout + CallSlack after it starts.
	CallSlack = 2 * time.Second
	// ProbeAttempts is how often an idempotent call (the access-token query) is tried.
	ProbeAttempts = 3
	// TickInterval is how often Vault runs the periodic function (its rollback manager's period).
	// A rotation planned for a moment runs at the first tick after it, up to this much later.
	TickInterval = time.Minute
	// StorageBound bounds the storage work that follows a refresh: the save and its retries, the
	// WAL delete, the status write and the events.
	StorageBound = 30 * time.Second
	// MaxRecordLatency bounds how long the WAL and in-flight writes may take before the refresh
	// is sent.
	MaxRecordLatency = 10 * time.Second
	// ConfirmAfter is how long a rejection seen by a read waits before the tick asks inabit a
	// second time: one answer might be a glitch, two a few seconds apart are inabit's word.
	ConfirmAfter = 5 * time.Second
)

// Budget is the timing of one mount's calls to inabit, from its request_timeout. Every duration
// the protocol reasons with comes from here, so the argument "settle only once the grace has
// passed since our call gave up" is written once.
type Budget struct {
	// RequestTimeout is request_timeout: how long one HTTP exchange with inabit may take.
	RequestTimeout time.Duration
	// Grace is refresh_grace_period: how long inabit may still apply a refresh after our call
	// gave up.
	Grace time.Duration
}

// Call is the timeout of one call to inabit.
func (b Budget) Call() time.Duration { return b.RequestTimeout + CallSlack }

// Probe bounds an access-token query with its retries.
func (b Budget) Probe() time.Duration { return ProbeAttempts * b.Call() }

// SettleAfter is how long after its records were started a refresh may be settled: it was sent at
// most MaxRecordLatency later, our call gave up at most Call() after that, and inabit is then
// given Grace to finish applying it.
func (b Budget) SettleAfter() time.Duration { return MaxRecordLatency + b.Call() + b.Grace }

// OutcomeCheckAt is SettleAfter counted from startedAt.
func (b Budget) OutcomeCheckAt(startedAt time.Time) time.Time { return startedAt.Add(b.SettleAfter()) }

// Rotation bounds a whole rotation: the probe before the refresh, the refresh, a probe after a
// failed refresh, and the storage work.
func (b Budget) Rotation() time.Duration { return 2*b.Probe() + b.Call() + StorageBound }

// MinExpiryMargin is the least time before exp at which a rotation must be planned: the tick
// that runs it comes up to a TickInterval late, one failed attempt may need a retry a
// TickInterval later, and the refresh itself takes up to Call().
func (b Budget) MinExpiryMargin() time.Duration { return 2*TickInterval + b.Call() }
