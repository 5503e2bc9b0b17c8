package inabit

import (
	"context"
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
func newInabitAPI(url string, timeout time.Duration) inabitAPI { return inabitapi.New(url, timeout) }
