package inabitapi

import (
	"net/http"
	"sync"
	"time"
)

// One plugin process serves every mount of the plugin (Vault's multiplexing), and every mount
// has its own Client. With a transport per client, each mount kept its own idle connection to
// inabit for 90 s after each call: some 17 KB of buffers and two goroutines each on loopback
// (more over TLS), and a TLS handshake per mount and call. So the network transport is shared
// by every client with the same request timeout and dial policy, the only things it depends on:
// idle connections to one host serve every mount, at most MaxIdleConnsPerHost of them.
//
// A transport lives while a client uses it: New acquires it, CloseIdle releases it, and the last
// release closes its idle connections and forgets it, as a client's own transport was closed
// before. There are at most two policies and request_timeout is whole seconds within 1s–5m, so
// even clients that never release leave a bounded number of transports.

// transportKey is what a network transport depends on: the per-call timeout (dial, TLS
// handshake, response headers) and the dial policy (loopback only, for http:// urls).
type transportKey struct {
	timeout      time.Duration
	loopbackOnly bool
}

type sharedTransport struct {
	t       *http.Transport
	clients int
}

var shared = struct {
	mu sync.Mutex
	m  map[transportKey]*sharedTransport
}{m: map[transportKey]*sharedTransport{}}

// acquireTransport is the process's transport for key, made on first use; each call is paired
// with one releaseTransport.
func acquireTransport(key transportKey) *http.Transport {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	st := shared.m[key]
	if st == nil {
		st = &sharedTransport{t: networkTransport(key.timeout, key.loopbackOnly)}
		shared.m[key] = st
	}
	st.clients++
	return st.t
}

// releaseTransport gives up one client's use of key's transport; the last one closes its idle
// connections (a call still in flight finishes on its own connection) and forgets it.
func releaseTransport(key transportKey) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	st := shared.m[key]
	if st == nil {
		return
	}
	if st.clients--; st.clients <= 0 {
		delete(shared.m, key)
		st.t.CloseIdleConnections()
	}
}

// sharedClients is how many clients use key's transport; 0 once it is forgotten (for tests).
func sharedClients(key transportKey) int {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if st := shared.m[key]; st != nil {
		return st.clients
	}
	return 0
}
