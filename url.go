package inabit

// What url may point at. Whoever may update config chooses where the plugin sends requests, and
// with them the login token: so the url is checked as written here (scheme, credentials,
// link-local and metadata addresses, numeric and non-ASCII hosts), and again when it is dialled
// (internal/inabitapi's dial policy), and a move to another origin needs the login token.

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"unicode"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/inabitapi"
)

func validateURL(raw string) (string, error) {
	if len(raw) > maxURLLen {
		return "", fmt.Errorf("%s is longer than %d characters", fieldURL, maxURLLen)
	}
	if strings.IndexFunc(raw, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return "", fmt.Errorf("%s contains whitespace or control characters", fieldURL)
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return "", fmt.Errorf("%s must be an absolute URL such as %s", fieldURL, defaultURL)
	}
	if u.User != nil {
		return "", fmt.Errorf("%s must not carry credentials: the login token is the only credential", fieldURL)
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return "", fmt.Errorf("%s must not have a #fragment", fieldURL)
	}
	if why := oddHost(u.Hostname()); why != "" {
		return "", fmt.Errorf("%s host %q %s", fieldURL, u.Hostname(), why)
	}
	if metadataHost(u.Hostname()) {
		return "", fmt.Errorf("%s points at a link-local or cloud-metadata address (%s); the plugin only calls inabit: use %s, or your own inabit endpoint", fieldURL, u.Hostname(), defaultURL)
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
	case "http":
		if !isLoopbackHost(u.Hostname()) {
			return "", fmt.Errorf("%s must use https://; http:// is allowed only for loopback hosts (127.0.0.0/8, ::1, localhost)", fieldURL)
		}
	default:
		return "", fmt.Errorf("%s must use https:// (got scheme %q)", fieldURL, u.Scheme)
	}
	return u.String(), nil
}

// origin is scheme://host:port of a validated url, with the scheme's default port made explicit.
func origin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"https": "443", "http": "80"}[strings.ToLower(u.Scheme)]
	}
	return strings.ToLower(u.Scheme) + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// sameOrigin says whether two urls reach the same server; a path change on it is harmless.
func sameOrigin(a, b string) bool { return origin(a) == origin(b) }

// metadataNames are the names cloud metadata services answer to; the dialer refuses their
// addresses whatever the name, this refuses the names as written so the 400 says why.
var metadataNames = []string{"metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal"}

// metadataHost says whether a url's host is, as written, an address the plugin never calls
// (inabitapi.ForbiddenAddress) or a metadata service's name.
func metadataHost(host string) bool {
	host = strings.TrimSuffix(host, ".")
	if a, err := netip.ParseAddr(host); err == nil {
		return inabitapi.ForbiddenAddress(a)
	}
	return slices.Contains(metadataNames, strings.ToLower(host))
}

// oddHost says why a url's host, as written, is refused though it might reach somewhere: a
// non-ASCII name (IDNA would map full-width digits or letters to an address or a metadata name),
// or a number in a form other than dotted decimal (resolvers and proxies read 2852039166,
// 0xa9fea9fe and 0251.0376.0251.0376 as 169.254.169.254, inet_aton style). Empty: fine.
func oddHost(host string) string {
	for _, r := range host {
		if r > unicode.MaxASCII {
			return "is not ASCII: write an internationalised name in its ASCII form (xn--...)"
		}
	}
	h := strings.TrimSuffix(host, ".")
	if _, err := netip.ParseAddr(h); err == nil {
		return ""
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if !inetAtonNumber(l) {
			return ""
		}
	}
	return "is a number in a form other than dotted decimal: write an IPv4 address as a.b.c.d"
}

// inetAtonNumber: decimal, 0x hex or 0 octal digits, as inet_aton reads each part.
func inetAtonNumber(s string) bool {
	lower := strings.ToLower(s)
	digits, ok := strings.CutPrefix(lower, "0x")
	if !ok {
		digits = lower
	}
	if digits == "" {
		return ok // "0x" alone is zero to inet_aton
	}
	for _, r := range digits {
		if !(r >= '0' && r <= '9' || ok && r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
