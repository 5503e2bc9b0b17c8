module github.com/inabit/vault-plugin-secrets-inabit/mockinabit

go 1.26

require (
	github.com/golang-jwt/jwt/v5 v5.3.1
	github.com/graph-gophers/graphql-go v1.11.0
)
