package inabit

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"
)

// loginState is the one owner of a mount's in-memory login state on this node: the config in
// use, a rotated token storage refused, the cached access token and its generation, the claims
// memo, a rejection that reads saw, and when this node first saw each rotation WAL entry. Every
// change goes through a method here, under its own lock, which is never held across I/O.
type loginState struct {
	mu sync.Mutex
	// config caches the storage entry; nil means "read storage". While unsaved it is ahead of
	// storage: it holds a rotated login token whose save failed, and it is the only copy.
	config     *inabitConfig
	unsaved    bool
	unsavedWAL string
	access     *accessToken
	// generation changes whenever the login token in use or the cached access token is
	// invalidated; a fetch started under an older generation never fills the cache.
	generation uint64
	// claimsToken/claimsValue memoise the login token's claims: parsing a JWT on every token read
	// was two thirds of the cached read path.
	claimsToken string
	claimsValue tokenClaims
	// rejectedToken is the hash of a login token inabit itself rejected on a read of this node,
	// and rejectedAt when (monotonic): the tick confirms it with a second answer.
	rejectedToken string
	rejectedAt    time.Duration
	// aliveToken is the hash of the last login token inabit issued an access token for in this
	// process: proof of life that a restart forgets, so a restarted node probes before it
	// refreshes a token whose last probe may have said dead.
	aliveToken string
	// walSeen is when this node first saw each rotation WAL entry, on its monotonic clock (its
	// own entries: from before it wrote them).
	walSeen map[string]time.Duration
	// settleMissed holds the WAL entries whose settling could not ask inabit, said once each.
	settleMissed map[string]bool
	// noWALsAt is when (monotonic) this node last listed the WAL prefix and found it empty;
	// noWALs says that still holds as far as it knows: it wrote no entry and heard of no storage
	// change since. An idle tick may then leave the prefix unlisted for a while (idle.go).
	noWALsAt time.Duration
	noWALs   bool
}

// current is a copy of the config in use and the generation it belongs to; nil: read storage.
func (l *loginState) current() (*inabitConfig, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.config.clone(), l.generation
}

// cachedAccess is the cached access token and the generation a fetch must belong to.
func (l *loginState) cachedAccess() (*accessToken, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.access, l.generation
}

// fill caches a config read from storage, unless anything changed since generation gen.
func (l *loginState) fill(cfg *inabitConfig, gen uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.generation == gen && l.config == nil {
		l.config = cfg.clone()
	}
}

// cacheAccess caches an access token fetched under generation gen, minted by loginToken.
func (l *loginState) cacheAccess(gen uint64, loginToken string, at *accessToken) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.generation == gen && (l.config == nil || l.config.LoginToken == loginToken) {
		l.access = at
	}
}

// use makes cfg's login token the one in use: a rotation's new token, or a config write (whose
// verified access token, if any, seeds the cache). Any earlier held token is over.
func (l *loginState) use(cfg *inabitConfig, verified *accessToken) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.config = cfg.clone()
	l.unsaved, l.unsavedWAL = false, ""
	l.access = verified
	l.generation++
}

// hold keeps cfg, whose rotated token storage refused, as the only copy until it is saved.
func (l *loginState) hold(cfg *inabitConfig, walID string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.config = cfg.clone()
	l.unsaved, l.unsavedWAL = true, walID
}

// updateHeld replaces the held config (its status changed), if a token is still held.
func (l *loginState) updateHeld(cfg *inabitConfig) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.unsaved {
		l.config = cfg.clone()
	}
}

// held is the config holding an unsaved rotated token and its WAL entry; ok is false when none.
func (l *loginState) held() (cfg *inabitConfig, walID string, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.unsaved {
		return nil, "", false
	}
	return l.config.clone(), l.unsavedWAL, true
}

// saved records that cfg, holding the once-unsaved token, is now in storage.
func (l *loginState) saved(cfg *inabitConfig) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.config = cfg.clone()
	l.unsaved, l.unsavedWAL = false, ""
}

// statusWritten caches cfg after its status was written to storage, unless it is about another
// token than the one in use or a held token is ahead of storage.
func (l *loginState) statusWritten(cfg *inabitConfig) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.unsaved && (l.config == nil || l.config.LoginToken == cfg.LoginToken) {
		l.config = cfg.clone()
	}
}

// invalidate forgets the cached config and access token after another node changed storage. A
// held token is kept: only the active node holds one, and it is the one writing.
func (l *loginState) invalidate() (kept bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.unsaved {
		return true
	}
	l.dropLocked()
	return false
}

// dropAll forgets everything, a held token included (unmount, seal, step-down, config delete);
// lostHeld says a held token was dropped.
func (l *loginState) dropAll() (lostHeld bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lostHeld = l.unsaved
	l.dropLocked()
	l.unsaved, l.unsavedWAL = false, ""
	return lostHeld
}

func (l *loginState) dropLocked() {
	l.config = nil
	l.access = nil
	l.generation++
}

// claims is cfg's login-token claims, memoised for the token in use.
func (l *loginState) claims(cfg *inabitConfig) tokenClaims {
	l.mu.Lock()
	if l.claimsToken == cfg.LoginToken {
		c := l.claimsValue
		l.mu.Unlock()
		return c
	}
	l.mu.Unlock()
	c := cfg.claims()
	l.mu.Lock()
	l.claimsToken, l.claimsValue = cfg.LoginToken, c
	l.mu.Unlock()
	return c
}

// noteRejected remembers that inabit itself rejected tok on a read at monotonic time at.
func (l *loginState) noteRejected(tok string, at time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := tokenHash(tok)
	if l.rejectedToken != h {
		l.rejectedToken, l.rejectedAt = h, at
	}
	if l.aliveToken == h {
		l.aliveToken = ""
	}
}

// noteAlive records that inabit issued an access token for tok: any rejection of it was a glitch.
func (l *loginState) noteAlive(tok string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := tokenHash(tok)
	l.aliveToken = h
	if l.rejectedToken == h {
		l.rejectedToken, l.rejectedAt = "", 0
	}
}

// forgetRejection forgets a rejection of tok: an operator wrote it again.
func (l *loginState) forgetRejection(tok string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rejectedToken == tokenHash(tok) {
		l.rejectedToken, l.rejectedAt = "", 0
	}
}

// provenAlive says inabit issued an access token for tok in this process and has not rejected it
// since.
func (l *loginState) provenAlive(tok string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := tokenHash(tok)
	return l.aliveToken == h && l.rejectedToken != h
}

// rejection says whether a read saw inabit reject tok, and when.
func (l *loginState) rejection(tok string) (at time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rejectedToken == "" || l.rejectedToken != tokenHash(tok) {
		return 0, false
	}
	return l.rejectedAt, true
}

// walSeenAt records when this node first saw WAL entry id and returns that monotonic time.
func (l *loginState) walSeenAt(id string, now time.Duration) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.walSeen == nil {
		l.walSeen = map[string]time.Duration{}
	}
	if seen, ok := l.walSeen[id]; ok {
		return seen
	}
	l.walSeen[id] = now
	return now
}

// sawNoWALs records that a listing of the WAL prefix at now found it empty.
func (l *loginState) sawNoWALs(now time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.noWALs, l.noWALsAt = true, now
}

// walsMayExist forgets that sighting: this node is about to write an entry, or storage changed
// under it.
func (l *loginState) walsMayExist() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.noWALs = false
}

// knowsNoWALs says whether this node listed the WAL prefix empty within the last within, and
// nothing since may have written one.
func (l *loginState) knowsNoWALs(now, within time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.noWALs && now-l.noWALsAt < within
}

func (l *loginState) forgetWAL(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.walSeen, id)
	delete(l.settleMissed, id)
}

// firstSettleMiss says whether this is the first time this process could not settle entry id.
func (l *loginState) firstSettleMiss(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.settleMissed[id] {
		return false
	}
	if l.settleMissed == nil {
		l.settleMissed = map[string]bool{}
	}
	l.settleMissed[id] = true
	return true
}

func tokenHash(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}
