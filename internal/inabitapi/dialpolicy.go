package inabitapi

import (
	"errors"
	"net/netip"
	"syscall"
)

// Which addresses a call may dial. The url was checked as text when it was written; this checks
// what a name actually resolved to, at the moment of connecting (a name can resolve anywhere, and
// differently tomorrow). Whoever can write config must not be able to make the plugin talk to a
// cloud metadata service or, over plain http, to anything but this host.
//
// With HTTPS_PROXY set, the address dialled is the proxy's: the target is resolved by the proxy,
// and only the url's text check applies to it.

var (
	errLinkLocal    = errors.New("the url's host resolved to a link-local, cloud-metadata, multicast or unspecified address, which the plugin never calls")
	errNotLoopback  = errors.New("the url uses http://, which is allowed only for a loopback address (a local test inabit), and its host resolved to another address: use https://")
	metadataServers = []netip.Addr{
		netip.MustParseAddr("fd00:ec2::254"),   // AWS IMDS over IPv6 (not link-local)
		netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud metadata
	}
	nat64 = netip.MustParsePrefix("64:ff9b::/96") // an IPv4 address reached through NAT64
)

// ForbiddenAddress says whether a is never to be called: link-local (169.254.0.0/16, fe80::/10,
// where every cloud's metadata service lives), a known metadata address elsewhere, multicast, or
// unspecified (0.0.0.0 reaches this host's every service). IPv4 inside IPv6 (mapped, NAT64) is
// judged as the IPv4 address it is.
func ForbiddenAddress(a netip.Addr) bool {
	a = a.Unmap()
	if a.Is6() && nat64.Contains(a) {
		b := a.As16()
		a = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	if a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return true
	}
	for _, m := range metadataServers {
		if a == m {
			return true
		}
	}
	return false
}

// checkDialAddress judges an "ip:port" about to be dialled.
func checkDialAddress(address string, loopbackOnly bool) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return errLinkLocal // a dialer is always handed ip:port; anything else is refused
	}
	a := ap.Addr().WithZone("")
	if ForbiddenAddress(a) {
		return errLinkLocal
	}
	if loopbackOnly && !a.Unmap().IsLoopback() {
		return errNotLoopback
	}
	return nil
}

// dialControl is a net.Dialer Control that applies checkDialAddress before any connection.
func dialControl(loopbackOnly bool) func(network, address string, _ syscall.RawConn) error {
	return func(_, address string, _ syscall.RawConn) error {
		return checkDialAddress(address, loopbackOnly)
	}
}
