package issuer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
)

func csrPEM(t *testing.T, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestParseCSR(t *testing.T) {
	tests := []struct {
		name      string
		profile   string
		tmpl      *x509.CertificateRequest
		wantNames []string
		wantErr   []string
	}{
		{name: "two names", tmpl: &x509.CertificateRequest{DNSNames: []string{"b.example.com", "a.example.com"}}, wantNames: []string{"a.example.com", "b.example.com"}},
		{name: "common name joins the names", tmpl: &x509.CertificateRequest{Subject: pkix.Name{CommonName: "cn.example.com"}, DNSNames: []string{"a.example.com"}}, wantNames: []string{"a.example.com", "cn.example.com"}},
		{name: "upper case is refused before an order", tmpl: &x509.CertificateRequest{DNSNames: []string{"A.Example.com"}}, wantErr: []string{`"A.Example.com"`, `write it as "a.example.com"`, "spec.dnsNames"}},
		{name: "a trailing dot is refused before an order", tmpl: &x509.CertificateRequest{DNSNames: []string{"a.example.com."}}, wantErr: []string{`"a.example.com."`, `write it as "a.example.com"`}},
		{name: "a name listed twice is refused before an order", tmpl: &x509.CertificateRequest{DNSNames: []string{"a.example.com", "a.example.com"}}, wantErr: []string{"once"}},
		{name: "the common name listed among the names counts once", tmpl: &x509.CertificateRequest{Subject: pkix.Name{CommonName: "a.example.com"}, DNSNames: []string{"a.example.com"}}, wantNames: []string{"a.example.com"}},
		{name: "wildcard is refused", tmpl: &x509.CertificateRequest{DNSNames: []string{"a.example.com", "*.example.com"}}, wantErr: []string{"HTTP-01", "wildcard", "*.example.com", "DNS-01"}},
		{name: "IP address is refused", tmpl: &x509.CertificateRequest{DNSNames: []string{"a.example.com"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}}, wantErr: []string{"IP address", "Host header", "spec.dnsNames"}},
		{name: "an IP address written as a DNS name is refused", tmpl: &x509.CertificateRequest{DNSNames: []string{"192.0.2.1"}}, wantErr: []string{`"192.0.2.1" is an IP address`, "Host header"}},
		{name: "26 names under tlsserver", profile: "tlsserver", tmpl: &x509.CertificateRequest{DNSNames: manyNames(26)}, wantErr: []string{"26 DNS names", `spec.profile "tlsserver"`, "at most 25"}},
		{name: "25 names under shortlived", profile: "shortlived", tmpl: &x509.CertificateRequest{DNSNames: manyNames(25)}, wantNames: manyNames(25)},
		{name: "26 names without a profile", tmpl: &x509.CertificateRequest{DNSNames: manyNames(26)}, wantNames: manyNames(26)},
		{name: "101 names under another profile", profile: "classic", tmpl: &x509.CertificateRequest{DNSNames: manyNames(101)}, wantErr: []string{"101 DNS names", "ACME CAs issue", "at most 100"}},
		{name: "a Common Name under shortlived is one of the names", profile: "shortlived", tmpl: &x509.CertificateRequest{Subject: pkix.Name{CommonName: "cn.example.com"}, DNSNames: []string{"a.example.com"}}, wantNames: []string{"a.example.com", "cn.example.com"}},
		{name: "no names", tmpl: &x509.CertificateRequest{}, wantErr: []string{"no DNS names", "spec.dnsNames"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, names, err := parseCSR(csrPEM(t, tt.tmpl), tt.profile)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("accepted %v", names)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q lacks %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(names, tt.wantNames) {
				t.Errorf("names %v, want %v", names, tt.wantNames)
			}
		})
	}
	if _, _, err := parseCSR([]byte("not a csr"), ""); err == nil {
		t.Error("garbage CSR accepted")
	}
}

// manyNames returns n names, sorted as parseCSR returns them.
func manyNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("n%03d.example.com", i)
	}
	return names
}
