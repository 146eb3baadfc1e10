package issuer

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/cert-manager/cert-manager/pkg/util/pki"

	"github.com/istio-acme/istio-acme-issuer/internal/dnsname"
)

// parseCSR returns the CSR and the DNS names to order, refusing what HTTP-01
// cannot prove and what CAs would refuse (names that are not host names,
// more than the issuer's profile takes, or written otherwise than CAs
// compare them). A Common Name is ordered as one of the names: a profile
// without Common Names (tlsserver) leaves the field out of the certificate
// and keeps the name, which cert-manager accepts.
func parseCSR(csrPEM []byte, profile string) (*x509.CertificateRequest, []string, error) {
	csr, err := pki.DecodeX509CertificateRequestBytes(csrPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("decoding the request's CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, nil, fmt.Errorf("the request's CSR signature is invalid: %w", err)
	}
	if len(csr.IPAddresses) > 0 {
		return nil, nil, errors.New("the request asks for an IP address, and this issuer orders DNS names only: " + ipRefusal)
	}
	if len(csr.URIs) > 0 || len(csr.EmailAddresses) > 0 {
		return nil, nil, errors.New("the request asks for IP, URI or email subject alternative names; this issuer orders DNS names only: list the host names in spec.dnsNames of the Certificate")
	}
	names := slices.Clone(csr.DNSNames)
	if cn := csr.Subject.CommonName; cn != "" && !slices.Contains(names, cn) {
		names = append(names, cn)
	}
	if len(names) == 0 {
		return nil, nil, errors.New("the request has no DNS names: set spec.dnsNames on the Certificate")
	}
	seen := map[string]bool{}
	for _, n := range csr.DNSNames {
		folded := dnsname.Canonical(n)
		if n != folded || seen[n] {
			// CAs check the CSR's names against the order's at finalization,
			// some as written: a name the order would carry differently
			// fails there, after the challenges were solved.
			return nil, nil, fmt.Errorf("the request lists %q, which is not written as the CA compares names (lower case, no trailing dot, each name once): write it as %q, once, in spec.dnsNames (and spec.commonName) of the Certificate", n, folded)
		}
		seen[n] = true
	}
	var wildcards []string
	for i, n := range names {
		names[i] = dnsname.Canonical(n)
		if strings.Contains(n, "*") {
			wildcards = append(wildcards, n)
		}
		if net.ParseIP(n) != nil {
			return nil, nil, fmt.Errorf("%q is an IP address, and this issuer orders DNS names only: %s", n, ipRefusal)
		}
	}
	if len(wildcards) > 0 {
		return nil, nil, fmt.Errorf("HTTP-01 cannot prove wildcard names (%s): ACME CAs accept only DNS-01 for them. Use an issuer with a DNS-01 solver for wildcards, or list each host name in the Certificate", strings.Join(wildcards, ", "))
	}
	for _, n := range names {
		if why := hostNameProblem(n); why != "" {
			return nil, nil, fmt.Errorf("%q is not a host name an ACME CA issues for: %s; correct it in spec.dnsNames (or spec.commonName) of the Certificate", n, why)
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	if limit, who := nameLimit(profile); len(names) > limit {
		return nil, nil, fmt.Errorf("the request has %d DNS names; %s at most %d names per certificate: split the Certificate into several", len(names), who, limit)
	}
	return csr, names, nil
}

// ipRefusal explains why IP address identifiers are refused.
const ipRefusal = "a CA validates an IP address by connecting to that address itself, " +
	"while the challenge route is found by the host name in the request's Host header, so an Istio gateway cannot prove an IP address for you. " +
	"List host names in spec.dnsNames of the Certificate; for a certificate of an IP address, use an issuer whose solver answers on that address"
