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
	errLinkLocal   = errors.New("the url's host resolved to a link-local, cloud-metadata, multicast or unspecified address, which the plugin never calls")
	errNotLoopback = errors.New("the url uses http://, which is allowed only for a loopback address (a local test inabit), and its host resolved to another address: use https://")
	// Cloud instance services that are not link-local: AWS reserves fd00:ec2::/32 for IMDS
	// (fd00:ec2::254) and the EKS Pod Identity agent (fd00:ec2::23), both of which hand out
	// credentials; Azure's WireServer and Alibaba's metadata service sit at fixed IPv4 addresses.
	metadataPrefixes = []netip.Prefix{
		netip.MustParsePrefix("fd00:ec2::/32"),
		netip.MustParsePrefix("168.63.129.16/32"),
		netip.MustParsePrefix("100.100.100.200/32"),
	}
	nat64WellKnown = netip.MustParsePrefix("64:ff9b::/96")   // RFC 6052
	nat64LocalUse  = netip.MustParsePrefix("64:ff9b:1::/48") // RFC 8215
)

// ForbiddenAddress says whether a is never to be called: link-local (169.254.0.0/16, fe80::/10,
// where every cloud's metadata service lives), a cloud instance service elsewhere
// (metadataPrefixes), multicast, or unspecified (0.0.0.0 reaches this host's every service).
// IPv4 inside IPv6 (mapped, NAT64) is judged as the IPv4 address it carries too.
func ForbiddenAddress(a netip.Addr) bool {
	a = a.Unmap()
	if forbiddenAlone(a) {
		return true
	}
	for _, v4 := range embeddedIPv4(a) {
		if forbiddenAlone(v4) {
			return true
		}
	}
	return false
}

func forbiddenAlone(a netip.Addr) bool {
	if a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return true
	}
	for _, p := range metadataPrefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// embeddedIPv4 is the IPv4 address a NAT64 address may carry: in the last 32 bits (a /96
// prefix, the usual one) or, under the local-use /48, also in RFC 6052's /48 layout.
func embeddedIPv4(a netip.Addr) []netip.Addr {
	if !a.Is6() || !(nat64WellKnown.Contains(a) || nat64LocalUse.Contains(a)) {
		return nil
	}
	b := a.As16()
	out := []netip.Addr{netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})}
	if nat64LocalUse.Contains(a) {
		out = append(out, netip.AddrFrom4([4]byte{b[6], b[7], b[9], b[10]}))
	}
	return out
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
