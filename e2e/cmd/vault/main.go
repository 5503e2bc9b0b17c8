// Command vault is the real Vault CLI and server, built from the pinned Vault module so that
// end-to-end tests and `make dev` run the same Vault that the in-process core tests use.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
