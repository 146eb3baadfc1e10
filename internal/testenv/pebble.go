package testenv

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// PebbleOptions configure the ACME CA.
type PebbleOptions struct {
	// HTTPPort is where Pebble's validator sends HTTP-01 requests: the
	// port the (simulated) ingress gateway listens on.
	HTTPPort int
	// TLSPort is where Pebble's validator sends TLS requests, including
	// HTTP-01 requests that were redirected to https without a port.
	TLSPort int
	// ExternalAccountBindingRequired makes newAccount require EAB with one
	// of ExternalAccountMACKeys (key ID to base64url HMAC key).
	ExternalAccountBindingRequired bool
	ExternalAccountMACKeys         map[string]string
	// ResolveTo is the IPv4 address Pebble's DNS answers for every name;
	// 127.0.0.1 when empty.
	ResolveTo string
	// DomainBlocklist names identifiers Pebble rejects (rejectedIdentifier).
	DomainBlocklist []string
	// Env adds variables, such as PEBBLE_VA_ALWAYS_VALID=1.
	Env []string
}

// Pebble is a running ACME CA with its DNS server.
type Pebble struct {
	// DirectoryURL is the ACME directory.
	DirectoryURL string
	// ManagementURL serves the CA's roots and intermediates.
	ManagementURL string
	// ServerCAPEM signs Pebble's own HTTPS certificate: the caBundle an
	// issuer needs to trust the directory.
	ServerCAPEM []byte
	// DNSAddr is the DNS server (host:port) Pebble resolves names with.
	DNSAddr string

	Process *Process
	// dnsManagementURL is challtestsrv's plain-HTTP management API.
	dnsManagementURL string
	// servingCertPEM and servingKeyPEM are Pebble's HTTPS certificate and
	// key, signed by ServerCAPEM; a proxy in front of Pebble serves them too.
	servingCertPEM, servingKeyPEM []byte
}

// StartPebble starts pebble-challtestsrv as a DNS server that answers
// o.ResolveTo for every name, and Pebble using it; both stop when the test
// ends.
func StartPebble(t testing.TB, o PebbleOptions) *Pebble {
	t.Helper()
	dir := t.TempDir()
	caPEM, certPath, keyPath := writeServingCert(t, dir)

	dnsPort, dnsMgmtPort := FreePort(t), FreePort(t)
	if o.ResolveTo == "" {
		o.ResolveTo = "127.0.0.1"
	}
	StartProcess(t, "pebble-challtestsrv", Tool(t, "pebble-challtestsrv"), []string{
		"-dnsserver", Addr(dnsPort),
		"-management", Addr(dnsMgmtPort),
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
		"-defaultIPv4", o.ResolveTo, "-defaultIPv6", "",
	})

	listen, mgmt := FreePort(t), FreePort(t)
	if o.HTTPPort == 0 {
		o.HTTPPort = FreePort(t)
	}
	if o.TLSPort == 0 {
		o.TLSPort = FreePort(t)
	}
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  Addr(listen),
		"managementListenAddress":        Addr(mgmt),
		"certificate":                    certPath,
		"privateKey":                     keyPath,
		"httpPort":                       o.HTTPPort,
		"tlsPort":                        o.TLSPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": o.ExternalAccountBindingRequired,
		"externalAccountMACKeys":         o.ExternalAccountMACKeys,
		"domainBlocklist":                o.DomainBlocklist,
		"keyAlgorithm":                   "ecdsa",
		// Short Retry-After answers: the controller polls on its own
		// schedule and never sleeps on these.
		"retryAfter": map[string]int{"authz": 1, "order": 1},
		"profiles": map[string]any{
			"default":    map[string]any{"description": "default", "validityPeriod": 7776000},
			"shortlived": map[string]any{"description": "short-lived", "validityPeriod": 518400},
		},
	}}
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	env := append([]string{
		"PEBBLE_VA_NOSLEEP=1",      // validate at once, not after 0-15 s
		"PEBBLE_WFE_NONCEREJECT=0", // no random badNonce answers
		"PEBBLE_AUTHZREUSE=0",      // validate afresh (Pebble still reuses a valid authorization for about 1 % of orders)
	}, o.Env...)
	proc := StartProcess(t, "pebble", Tool(t, "pebble"), []string{
		"-config", cfgPath, "-dnsserver", Addr(dnsPort), "-strict",
	}, env...)

	p := &Pebble{
		DirectoryURL:  fmt.Sprintf("https://%s/dir", Addr(listen)),
		ManagementURL: fmt.Sprintf("https://%s", Addr(mgmt)),
		ServerCAPEM:   caPEM,
		DNSAddr:       Addr(dnsPort),
		Process:       proc,

		dnsManagementURL: "http://" + Addr(dnsMgmtPort),
	}
	if p.servingCertPEM, err = os.ReadFile(certPath); err != nil {
		t.Fatal(err)
	}
	if p.servingKeyPEM, err = os.ReadFile(keyPath); err != nil {
		t.Fatal(err)
	}
	p.waitReady(t)
	return p
}

// AddA makes Pebble's DNS answer host with the IPv4 address ip (besides any
// added before) instead of the default address.
func (p *Pebble) AddA(t testing.TB, host, ip string) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"host": host, "addresses": []string{ip}})
	if err != nil {
		t.Fatal(err)
	}
	cl := &http.Client{Timeout: 10 * time.Second}
	res, err := cl.Post(p.dnsManagementURL+"/add-a", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("adding an A record for %s: %v", host, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(res.Body)
		t.Fatalf("adding an A record for %s: %s %s", host, res.Status, msg)
	}
}

// FailedValidations returns the lines of Pebble's log where it declared an
// authorization invalid after validating its challenge: the CA's own
// record, whether or not any client read the result.
func (p *Pebble) FailedValidations() []string {
	var out []string
	for _, line := range strings.Split(p.Process.Log(), "\n") {
		if strings.Contains(line, "set INVALID by completed challenge") {
			out = append(out, line)
		}
	}
	return out
}

// SetRenewalWindow makes Pebble's renewal information (RFC 9773) for the
// certificate (PEM) suggest renewing between start and end, with the
// explanation URL, as a CA does that moves a window before revoking.
// It may be called from any goroutine.
func (p *Pebble) SetRenewalWindow(certPEM []byte, start, end time.Time, explanationURL string) error {
	info, err := json.Marshal(map[string]any{
		"suggestedWindow": map[string]string{"start": start.UTC().Format(time.RFC3339), "end": end.UTC().Format(time.RFC3339)},
		"explanationURL":  explanationURL,
	})
	if err != nil {
		return err
	}
	body, err := json.Marshal(map[string]string{"Certificate": string(certPEM), "ARIResponse": string(info)})
	if err != nil {
		return err
	}
	res, err := p.HTTPClient().Post(p.ManagementURL+"/set-renewal-info/", "application/json", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("setting the renewal window: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(res.Body)
		return fmt.Errorf("setting the renewal window: %s %s", res.Status, msg)
	}
	return nil
}

// Replacements returns the lines of Pebble's log where it accepted a new
// order as the replacement of an earlier certificate's order (RFC 9773).
func (p *Pebble) Replacements() []string {
	var out []string
	for _, line := range strings.Split(p.Process.Log(), "\n") {
		if strings.Contains(line, "is a replacement of") {
			out = append(out, line)
		}
	}
	return out
}

// HTTPClient trusts Pebble's serving certificate.
func (p *Pebble) HTTPClient() *http.Client {
	return clientTrusting(p.ServerCAPEM)
}

// RootPEM is the root that signs the certificates Pebble issues. Pebble
// makes a new one at every start.
func (p *Pebble) RootPEM(t testing.TB) []byte {
	t.Helper()
	res, err := p.HTTPClient().Get(p.ManagementURL + "/roots/0")
	if err != nil {
		t.Fatalf("reading Pebble's root: %v", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("reading Pebble's root: status %d, %v", res.StatusCode, err)
	}
	return body
}

func (p *Pebble) waitReady(t testing.TB) {
	t.Helper()
	waitDirectory(t, "pebble", p.DirectoryURL, p.HTTPClient(), p.Process)
}

// clientTrusting is an HTTP client that trusts the CA certificates caPEM.
func clientTrusting(caPEM []byte) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

// waitDirectory waits until an ACME server's process answers its
// directory, for 30 s; the test fails if the process exits first.
func waitDirectory(t testing.TB, name, url string, cl *http.Client, proc *Process) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := cl.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if exited, perr := proc.Exited(); exited {
			t.Fatalf("%s exited: %v\n%s", name, perr, proc.Log())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready at %s: %v\n%s", name, url, err, proc.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writeServingCert makes a CA and a certificate for 127.0.0.1 and localhost
// signed by it, so Pebble serves HTTPS that an issuer trusts only through
// spec.caBundle.
func writeServingCert(t testing.TB, dir string) (caPEM []byte, certPath, keyPath string) {
	t.Helper()
	now := time.Now()
	ca := newTestCert(t, &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test ACME server CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}, nil)
	serving := newTestCert(t, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca)
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	serving.writeFiles(t, certPath, keyPath)
	return ca.CertPEM(), certPath, keyPath
}
