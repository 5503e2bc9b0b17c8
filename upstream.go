package inabit

import (
	"context"
	"errors"
	"time"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/inabitapi"
)

// inabitAPI is what the backend needs from inabit; internal/inabitapi implements it.
type inabitAPI interface {
	AccessToken(ctx context.Context, loginToken string) (string, error)
	RefreshLoginToken(ctx context.Context, loginToken string) (newToken, answerErrors string, err error)
	CloseIdle()
}

const defaultURL = inabitapi.DefaultURL

// newInabitAPI is the production newAPI: the real client over the network.
// Every 429 it meets, even one a retry gets past, holds the scheduled rotations to url (herd_pace.go).
func newInabitAPI(url string, timeout time.Duration) inabitAPI {
	return inabitapi.New(url, timeout, inabitapi.WithRateLimitNotice(func(retryAfter time.Duration) { noteRateLimited(url, retryAfter) }))
}

// inabitSaid is what the answer to a failed call said (an HTML title, a GraphQL message),
// sanitised and redacted, for the operator's log only: an error returned to a caller never
// carries it, since whoever can write config can point url at an internal service.
func inabitSaid(err error) string {
	var ue *inabitapi.Error
	if errors.As(err, &ue) {
		return ue.Said
	}
	return ""
}
