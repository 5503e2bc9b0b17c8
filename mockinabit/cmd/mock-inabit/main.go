// Command mock-inabit serves the inabit stand-in on a loopback address for local development.
// It writes its first login token to -login-token-file (or prints it) so scripts can configure
// the plugin with it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/inabit/vault-plugin-secrets-inabit/mockinabit"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8300", "loopback address to listen on")
	tokenFile := flag.String("login-token-file", "", "write the first login token here (mode 0600) instead of printing it")
	loginTTL := flag.Duration("login-ttl", 30*24*time.Hour, "lifetime of login tokens")
	accessTTL := flag.Duration("access-ttl", 15*time.Minute, "lifetime of access tokens")
	flag.Parse()

	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		log.Fatalf("-addr %q: %v", *addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		log.Fatalf("-addr %q: the mock listens on loopback addresses only (127.0.0.0/8, ::1, localhost)", *addr)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("cannot listen on %s (is the port taken? pick another with -addr): %v", *addr, err)
	}

	mock := mockinabit.New(mockinabit.Options{LoginTokenTTL: *loginTTL, AccessTokenTTL: *accessTTL})
	if *tokenFile != "" {
		if err := os.WriteFile(*tokenFile, []byte(mock.LoginToken()+"\n"), 0o600); err != nil {
			log.Fatalf("writing -login-token-file: %v", err)
		}
	} else {
		fmt.Println(mock.LoginToken())
	}
	log.Printf("mock inabit GraphQL API at http://%s/graphql", ln.Addr())

	srv := &http.Server{Handler: mock.Handler(), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
