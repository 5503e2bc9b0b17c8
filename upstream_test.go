package inabit

import (
	"net/http"
	"testing"
	"time"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/inabitapi"
	"github.com/inabit/vault-plugin-secrets-inabit/internal/rotation"
)

// apiOver is a newAPI that puts rt, instead of the network, under the client's status handling.
func apiOver(rt http.RoundTripper, opts ...inabitapi.Option) func(string, time.Duration) inabitAPI {
	return func(url string, timeout time.Duration) inabitAPI {
		return inabitapi.New(url, timeout, append([]inabitapi.Option{inabitapi.WithTransport(rt)}, opts...)...)
	}
}

// TestProbeBudgetCoversTheClientsAttempts: the protocol's probe budget counts the attempts the
// client really makes, so a probe is never cut short by its own deadline.
func TestProbeBudgetCoversTheClientsAttempts(t *testing.T) {
	if rotation.ProbeAttempts != inabitapi.MaxAttempts {
		t.Fatalf("rotation.ProbeAttempts = %d, inabitapi.MaxAttempts = %d", rotation.ProbeAttempts, inabitapi.MaxAttempts)
	}
}
