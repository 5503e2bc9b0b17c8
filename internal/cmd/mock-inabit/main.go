// Command mock-inabit serves the inabit stand-in on a loopback address for `make dev` and for the
// e2e suite, which starts one process per mock (-addr 127.0.0.1:0 -url-file F -exit-on-stdin-eof)
// and drives it through e2e/internal/mockctl. It writes its first login token to
// -login-token-file (or prints it) so scripts can configure the plugin with it.
//
// GraphQL is served at any path except /admin/. On the same listener the control API
// (internal/mockinabit/admin.go lists its routes) reads and changes the mock's state, e.g.
//
//	curl -X POST 'http://127.0.0.1:8300/admin/ttl?login=90s&access=60s'
//	curl 'http://127.0.0.1:8300/admin/counts'
//	curl -X POST 'http://127.0.0.1:8300/admin/faults?op=refreshApiUserLoginToken' -d '{"kind":"hold-after-apply","delay":"1m","times":1}'
//	curl -X POST 'http://127.0.0.1:8300/admin/revoke'
//	curl -X POST 'http://127.0.0.1:8300/admin/users?n=500'   # 500 more API users, their login tokens
//	curl -X POST 'http://127.0.0.1:8300/admin/rate-limit?per_second=20'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
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
	urlFile := flag.String("url-file", "", "once listening, write the base URL (http://127.0.0.1:PORT) here; with -addr 127.0.0.1:0 the caller learns the port")
	stdinEOF := flag.Bool("exit-on-stdin-eof", false, "exit when stdin closes, so a mock started by a test dies with it")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: %s [flags]\n\n"+
			"Serves a mock inabit GraphQL API on a loopback address. On the same listener,\n"+
			"  POST /admin/ttl?login=90s&access=60s  sets the lifetimes of tokens minted from now on\n"+
			"  GET  /admin/ttl                       shows them\n"+
			"  POST /admin/users?n=500               creates 500 more API users, each with its own login token\n"+
			"  POST /admin/rate-limit?per_second=20  answers 429 (Retry-After: 1) beyond 20 calls a second\n"+
			"and the rest of the control API (counts, history, users, rate-limit, faults, login-token, revoke,\n"+
			"valid/..., wait-idle, applied)\n"+
			"documented on AdminHandler in internal/mockinabit/admin.go.\n\nFlags:\n", os.Args[0])
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
	if *urlFile != "" {
		// Write then rename, so a reader never sees half a URL.
		tmp := *urlFile + ".tmp"
		if err := os.WriteFile(tmp, []byte("http://"+ln.Addr().String()+"\n"), 0o600); err != nil {
			log.Fatalf("writing -url-file: %v", err)
		}
		if err := os.Rename(tmp, *urlFile); err != nil {
			log.Fatalf("writing -url-file: %v", err)
		}
	}

	mux := http.NewServeMux()
	mux.Handle("/admin/", mock.AdminHandler())
	mux.Handle("/", mock.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *stdinEOF {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stop()
		}()
	}
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
