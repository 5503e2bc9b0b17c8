package inabitapi

import (
	"net/netip"
	"testing"
)

// "a known metadata address elsewhere" lists AWS IMDS's IPv6 fd00:ec2::254 and
// Alibaba's 100.100.100.200, but not the rest of the same ranges that hand out credentials or
// platform configuration: AWS reserves fd00:ec2::/32 for its instance services (the EKS Pod
// Identity agent, which serves IAM credentials, listens on [fd00:ec2::23] as well as on the
// link-local 169.254.170.23), and Azure's WireServer, 168.63.129.16, is not link-local; NAT64's
// local-use prefix 64:ff9b:1::/48 (RFC 8215) carries IPv4 like 64:ff9b::/96 does.
func TestDialPolicy_CoversEveryCloudInstanceServiceRange(t *testing.T) {
	for _, s := range []string{
		"fd00:ec2::23",         // EKS Pod Identity agent (IAM credentials)
		"fd00:ec2::1",          // any other AWS instance service
		"168.63.129.16",        // Azure WireServer
		"64:ff9b:1::a9fe:a9fe", // 169.254.169.254 through a local-use NAT64 prefix
	} {
		if !ForbiddenAddress(netip.MustParseAddr(s)) {
			t.Errorf("%s: may be dialled", s)
		}
	}
}
