// Command mock-inabit serves the inabit stand-in on a loopback address for local development.
// It writes its first login token to -login-token-file (or prints it) so scripts can configure
// the plugin with it.
//
// GraphQL is served at any path except /admin/. On the same listener:
//
//	curl -X POST 'http://127.0.0.1:8300/admin/ttl?login=90s&access=60s'
//
// changes the lifetimes of login and access tokens minted from then on (either parameter may be
// omitted); GET /admin/ttl shows them.
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

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8300", "loopback address to listen on")
	tokenFile := flag.String("login-token-file", "", "write the first login token here (mode 0600) instead of printing it")
	loginTTL := flag.Duration("login-ttl", 30*24*time.Hour, "lifetime of login tokens")
	accessTTL := flag.Duration("access-ttl", 15*time.Minute, "lifetime of access tokens")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: %s [flags]\n\n"+
			"Serves a mock inabit GraphQL API on a loopback address. On the same listener,\n"+
			"  POST /admin/ttl?login=90s&access=60s  sets the lifetimes of tokens minted from now on\n"+
			"  GET  /admin/ttl                       shows them\n\nFlags:\n", os.Args[0])
		flag.PrintDefaults()
	}
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
	log.Printf("mock inabit GraphQL API at http://%s/graphql; token lifetimes: POST http://%s/admin/ttl?login=90s&access=60s", ln.Addr(), ln.Addr())

	mux := http.NewServeMux()
	mux.Handle("/admin/", mock.AdminHandler())
	mux.Handle("/", mock.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
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
