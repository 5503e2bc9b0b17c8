package inabit

import (
	"net/http"
	"time"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/inabitapi"
)

// apiOver is a newAPI that puts rt, instead of the network, under the client's status handling.
func apiOver(rt http.RoundTripper, opts ...inabitapi.Option) func(string, time.Duration) inabitAPI {
	return func(url string, timeout time.Duration) inabitAPI {
		return inabitapi.New(url, timeout, append([]inabitapi.Option{inabitapi.WithTransport(rt)}, opts...)...)
	}
}
