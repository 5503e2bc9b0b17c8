package inabit

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestParseClaims(t *testing.T) {
	iat := time.Unix(1_800_000_000, 0).UTC()
	exp := iat.Add(30 * 24 * time.Hour)
	cases := []struct {
		name     string
		token    string
		want     tokenClaims
		wantErr  bool
		lifetime time.Duration
	}{
		{"iat and exp", makeJWT(t, jwt.MapClaims{"iat": iat.Unix(), "exp": exp.Unix()}), tokenClaims{iat, exp}, false, 30 * 24 * time.Hour},
		{"exp only", makeJWT(t, jwt.MapClaims{"exp": exp.Unix()}), tokenClaims{ExpiresAt: exp}, false, 0},
		{"no claims", makeJWT(t, jwt.MapClaims{}), tokenClaims{}, false, 0},
		{"expired still parses", makeJWT(t, jwt.MapClaims{"exp": 1}), tokenClaims{ExpiresAt: time.Unix(1, 0).UTC()}, false, 0},
		{"unsigned alg none", "eyJhbGciOiJub25lIn0.eyJleHAiOjE4MDAwMDAwMDB9.", tokenClaims{ExpiresAt: time.Unix(1_800_000_000, 0).UTC()}, false, 0},
		{"not a jwt", "opaque", tokenClaims{}, true, 0},
		{"bad base64", "a.b.c", tokenClaims{}, true, 0},
		{"exp wrong type", makeJWT(t, jwt.MapClaims{"exp": "tomorrow"}), tokenClaims{}, true, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseClaims(tc.token)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil {
				if !errors.Is(err, jwt.ErrTokenMalformed) && !errors.Is(err, errNotJWT) {
					t.Fatalf("untyped error %v", err)
				}
				if strings.Contains(err.Error(), tc.token) {
					t.Fatal("error quotes the token")
				}
				return
			}
			if !got.IssuedAt.Equal(tc.want.IssuedAt) || !got.ExpiresAt.Equal(tc.want.ExpiresAt) || got.lifetime() != tc.lifetime {
				t.Fatalf("got %+v (lifetime %s), want %+v (lifetime %s)", got, got.lifetime(), tc.want, tc.lifetime)
			}
		})
	}
}
