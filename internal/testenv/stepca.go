package testenv

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// StepCAOptions configure Smallstep's step-ca, a second ACME server that
// nobody here wrote, so that the ACME client does not only know Pebble.
type StepCAOptions struct {
	// HTTPPort is where step-ca's validator sends HTTP-01 requests: the
	// port the (simulated) ingress gateway listens on.
	HTTPPort int
	// DNSAddr is the DNS server (host:port) the validator resolves
	// challenged names with, such as Pebble's.
	DNSAddr string
}

// StepCA is a running step-ca with one ACME provisioner that requires
// external account binding.
type StepCA struct {
	// DirectoryURL is the ACME provisioner's directory.
	DirectoryURL string
	// RootPEM is step-ca's root: it signs both step-ca's own HTTPS
	// certificate (the caBundle an issuer needs) and what it issues.
	RootPEM []byte
	// EABKeyID and EABHMACKey (base64url) bind an ACME account.
	EABKeyID, EABHMACKey string

	Process *Process
}

// StartStepCA writes a root, an intermediate and a configuration, stores
// an external account binding key in a new database with step-ca's own
// code, and starts step-ca; it stops when the test ends.
func StartStepCA(t testing.TB, o StepCAOptions) *StepCA {
	t.Helper()
	bin := Tool(t, "step-ca")
	eabkey := Tool(t, "step-ca-eabkey")
	dir := t.TempDir()
	rootPEM := writeStepCAKeys(t, dir)
	dbDir := filepath.Join(dir, "db")

	out, err := exec.Command(eabkey, "-db-type", "bbolt", "-db", dbDir, "-reference", "istio-acme-issuer").CombinedOutput()
	if err != nil {
		t.Fatalf("storing an external account binding key for step-ca: %v\n%s", err, out)
	}
	lines := strings.Fields(string(out))
	if len(lines) != 2 {
		t.Fatalf("step-ca-eabkey printed %q, want a key ID and an HMAC key", out)
	}

	port := FreePort(t)
	cfg := map[string]any{
		"root":     filepath.Join(dir, "root_ca.crt"),
		"crt":      filepath.Join(dir, "intermediate_ca.crt"),
		"key":      filepath.Join(dir, "intermediate_ca_key"),
		"address":  Addr(port),
		"dnsNames": []string{"127.0.0.1", "localhost"},
		"db":       map[string]any{"type": "bbolt", "dataSource": dbDir},
		"logger":   map[string]any{"format": "text"},
		"authority": map[string]any{
			"provisioners": []map[string]any{{
				"type": "ACME", "name": "acme", "requireEAB": true,
				"challenges": []string{"http-01"},
			}},
		},
		"tls": map[string]any{"minVersion": 1.2, "maxVersion": 1.3, "renegotiation": false},
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "ca.json")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{cfgPath}
	if o.HTTPPort != 0 && o.HTTPPort != 80 {
		// step-ca validates on port 80 unless told otherwise, which it
		// only allows as --insecure.
		args = append(args, "--insecure", fmt.Sprintf("--acme-http-port=%d", o.HTTPPort))
	}
	if o.DNSAddr != "" {
		args = append(args, "--resolver", o.DNSAddr)
	}
	proc := StartProcess(t, "step-ca", bin, args)
	s := &StepCA{
		DirectoryURL: fmt.Sprintf("https://%s/acme/acme/directory", Addr(port)),
		RootPEM:      rootPEM,
		EABKeyID:     lines[0],
		EABHMACKey:   lines[1],
		Process:      proc,
	}
	waitDirectory(t, "step-ca", s.DirectoryURL, s.HTTPClient(), s.Process)
	return s
}

// HTTPClient trusts step-ca's root.
func (s *StepCA) HTTPClient() *http.Client {
	return clientTrusting(s.RootPEM)
}

// FailedValidations returns the URLs of the challenges step-ca answered as
// invalid, from the responses its log records (it logs no line of its
// own for a failed validation, and tells the client only the problem
// type).
func (s *StepCA) FailedValidations() []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range invalidChallenge.FindAllStringSubmatch(s.Process.Log(), -1) {
		if !seen[m[1]] {
			seen[m[1]] = true
			out = append(out, m[1])
		}
	}
	return out
}

// invalidChallenge is a challenge in an invalid state in a logged
// response (JSON quoted inside the log line).
var invalidChallenge = regexp.MustCompile(`\\"status\\":\\"invalid\\",\\"token\\":\\"[^\\]*\\",\\"url\\":\\"([^\\]*)`)

// writeStepCAKeys writes a root and an intermediate signed by it, as
// `step ca init` would, with the intermediate's key unencrypted.
func writeStepCAKeys(t testing.TB, dir string) (rootPEM []byte) {
	t.Helper()
	now := time.Now()
	root := newTestCert(t, &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "step-ca test root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLen: 1,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil)
	intermediate := newTestCert(t, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "step-ca test intermediate"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, root)
	intermediate.writeFiles(t, filepath.Join(dir, "intermediate_ca.crt"), filepath.Join(dir, "intermediate_ca_key"))
	rootPEM = root.CertPEM()
	if err := os.WriteFile(filepath.Join(dir, "root_ca.crt"), rootPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return rootPEM
}
