package inabit

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/inabitapi"
)

// validateURL refuses link-local and metadata IP literals "as written", but only
// the forms netip parses. The same address written in the other forms resolvers and proxies
// accept (inet_aton's decimal, hex and octal; a trailing dot; full-width digits, which the HTTP
// client maps to ASCII through IDNA before it dials or sends CONNECT) is saved without a word.
// Without a proxy the dial check still refuses most of them; with HTTPS_PROXY set this text check
// is the only one (the proxy resolves the target), so these reach the proxy as 169.254.169.254.
func TestURLRefusesMetadataAddressInEveryWrittenForm(t *testing.T) {
	for _, u := range []string{
		"https://2852039166/latest",          // decimal 169.254.169.254 (inet_aton, curl, squid)
		"https://0xa9fea9fe/latest",          // hex
		"https://0251.0376.0251.0376/latest", // octal
		"https://0xa9.0xfe.0xa9.0xfe/latest", // dotted hex
		"https://169.254.43518/latest",       // inet_aton's a.b.c form
		"https://169.254.169.254./latest",    // trailing dot
		"https://１６９.２５４.１６９.２５４/latest",     // full-width digits: IDNA maps them to 169.254.169.254
		"https://ⓜetadata.google.internal/",  // IDNA maps ⓜ to m
	} {
		if got, err := validateURL(u); err == nil {
			t.Errorf("%s: accepted as %s", u, got)
		}
	}
}

// End to end, under the documented proxy route: with HTTPS_PROXY set the dial check
// sees only the proxy, so validateURL is the only guard, and a url it accepts makes the plugin ask
// the proxy for a tunnel to the metadata service. Runs in a child process: net/http reads the
// proxy settings once per process.
func TestThroughAProxyNoURLAsksForTheMetadataService(t *testing.T) {
	if os.Getenv("INABIT_TEST_PROXY_CHILD") == "1" {
		for _, u := range []string{"https://１６９.２５４.１６９.２５４/latest"} {
			stored, err := validateURL(u)
			if err != nil {
				continue // refused as written: fine
			}
			_, _ = inabitapi.New(stored, 2*time.Second, inabitapi.WithoutRetryWait()).AccessToken(context.Background(), "x")
		}
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skip(err)
	}
	defer ln.Close()
	connects := make(chan string, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				connects <- strings.TrimSpace(line)
				_, _ = c.Write([]byte("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"))
			}(c)
		}
	}()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestThroughAProxyNoURLAsksForTheMetadataService$", "-test.count=1")
	cmd.Env = append(os.Environ(), "INABIT_TEST_PROXY_CHILD=1", "HTTPS_PROXY=http://"+ln.Addr().String(), "https_proxy=", "NO_PROXY=", "no_proxy=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	close(connects)
	for line := range connects {
		if strings.Contains(line, "169.254.169.254") {
			t.Errorf("the proxy was asked: %s", line)
		}
	}
}
