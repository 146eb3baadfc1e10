package issuer

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cert-manager/cert-manager/third_party/forked/acme"
	"github.com/cert-manager/issuer-lib/controllers/signer"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/istio-acme/istio-acme-issuer/internal/metrics"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

func TestCAOutcome(t *testing.T) {
	problem := func(kind string, h http.Header) error {
		return &acme.Error{StatusCode: 400, ProblemType: problemPrefix + kind, Detail: "detail of " + kind, Header: h}
	}
	tests := []struct {
		name        string
		err         error
		wantKind    string // pending, permanent, retry
		wantRequeue time.Duration
		wantText    []string
	}{
		{name: "rate limited with Retry-After", err: problem("rateLimited", http.Header{"Retry-After": {"120"}}), wantKind: "pending", wantRequeue: 2 * time.Minute, wantText: []string{"rateLimited", "retrying after 2m0s"}},
		{name: "rate limited without Retry-After", err: problem("rateLimited", nil), wantKind: "pending", wantRequeue: defaultRateLimitWait},
		{name: "rejected identifier", err: problem("rejectedIdentifier", nil), wantKind: "permanent", wantText: []string{"rejectedIdentifier", "detail of rejectedIdentifier"}},
		{name: "unsupported identifier", err: problem("unsupportedIdentifier", nil), wantKind: "permanent"},
		{name: "CAA forbids", err: problem("caa", nil), wantKind: "permanent"},
		{name: "malformed", err: problem("malformed", nil), wantKind: "permanent"},
		{name: "CSR refused", err: problem("badCSR", nil), wantKind: "permanent"},
		{name: "server error", err: problem("serverInternal", nil), wantKind: "retry", wantText: []string{"serverInternal"}},
		{name: "bad nonce", err: problem("badNonce", nil), wantKind: "retry"},
		{name: "network", err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, wantKind: "retry", wantText: []string{"cannot reach the ACME server", "spec.server"}},
		{name: "unknown CA", err: x509.UnknownAuthorityError{}, wantKind: "retry", wantText: []string{"spec.caBundle"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := caOutcome("creating an order", tt.err)
			var pending signer.PendingError
			kind := "retry"
			switch {
			case errors.As(got, &pending):
				kind = "pending"
			case errors.As(got, &signer.PermanentError{}):
				kind = "permanent"
			}
			if kind != tt.wantKind {
				t.Fatalf("%v classified %s, want %s", got, kind, tt.wantKind)
			}
			if tt.wantRequeue != 0 && pending.RequeueAfter != tt.wantRequeue {
				t.Errorf("requeue after %s, want %s", pending.RequeueAfter, tt.wantRequeue)
			}
			for _, s := range append(tt.wantText, "creating an order") {
				if !strings.Contains(got.Error(), s) {
					t.Errorf("message %q lacks %q", got.Error(), s)
				}
			}
		})
	}
}

func TestProblemTextNamesSubproblems(t *testing.T) {
	ae := &acme.Error{StatusCode: 400, ProblemType: problemPrefix + "rejectedIdentifier", Detail: "policy forbids",
		Subproblems: []acme.Subproblem{{Detail: "blocked", Identifier: &acme.AuthzID{Type: "dns", Value: "bad.example"}}}}
	got := problemText(ae)
	for _, want := range []string{"rejectedIdentifier", "HTTP 400", "policy forbids", "bad.example: blocked"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	if d, ok := retryAfter(http.Header{"Retry-After": {"30"}}); !ok || d != 30*time.Second {
		t.Errorf("seconds: got %s %v", d, ok)
	}
	future := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	if d, ok := retryAfter(http.Header{"Retry-After": {future}}); !ok || d < 80*time.Second || d > 91*time.Second {
		t.Errorf("date: got %s %v", d, ok)
	}
	if _, ok := retryAfter(http.Header{}); ok {
		t.Error("absent header parsed")
	}
	if _, ok := retryAfter(http.Header{"Retry-After": {"soon"}}); ok {
		t.Error("garbage parsed")
	}
}

func TestCAOutcomeCountsCAErrorsByType(t *testing.T) {
	before := func(kind string) float64 { return testutil.ToFloat64(metrics.CAErrors.WithLabelValues(kind)) }
	rate, nonce, transport := before("rateLimited"), before("badNonce"), before("transport")
	_ = caOutcome("creating an order", &acme.Error{StatusCode: 429, ProblemType: problemRateLimited})
	_ = caOutcome("creating an order", &acme.Error{StatusCode: 400, ProblemType: problemPrefix + "badNonce"})
	_ = caOutcome("creating an order", &acme.Error{StatusCode: 400, ProblemType: problemPrefix + "badNonce"})
	_ = caOutcome("creating an order", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")})
	for kind, want := range map[string]float64{"rateLimited": rate + 1, "badNonce": nonce + 2, "transport": transport + 1} {
		if got := before(kind); got != want {
			t.Errorf("istio_acme_ca_errors_total{type=%q} = %v, want %v", kind, got, want)
		}
	}
}

// Only a failure after the request may have reached the CA leaves an
// order in doubt.
func TestMayHaveReachedCA(t *testing.T) {
	refused := &url.Error{Op: "Post", URL: "https://ca.example/new-order", Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
	reset := &url.Error{Op: "Post", URL: "https://ca.example/new-order", Err: &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"the CA answered with a problem", &acme.Error{StatusCode: 503, ProblemType: "urn:ietf:params:acme:error:serverInternal"}, false},
		{"the account is held", &url.Error{Op: "Post", URL: "https://ca.example", Err: &heldError{until: time.Now(), reason: "429"}}, false},
		{"connection refused", refused, false},
		{"no such host", &url.Error{Op: "Post", URL: "https://ca.example", Err: &net.DNSError{Err: "no such host", Name: "ca.example"}}, false},
		{"a reset after sending", reset, true},
		{"EOF", &url.Error{Op: "Post", URL: "https://ca.example", Err: io.EOF}, true},
		{"a timeout", context.DeadlineExceeded, true},
	} {
		if got := mayHaveReachedCA(tc.err); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A CA that takes the connection but never answers is named as slow, not as
// unreachable: its address and the egress to it are fine.
func TestCAOutcomeOfAnAnswerThatNeverCame(t *testing.T) {
	addr := testenv.ServeTCP(t, func(net.Conn) {}) // read nothing, answer nothing
	c := &http.Client{Timeout: 100 * time.Millisecond}
	_, err := c.Post("http://"+addr+"/my-order/1", "application/jose+json", strings.NewReader("{}"))
	if err == nil {
		t.Fatal("a server that never answers answered")
	}
	got := caOutcome("reading order", err).Error()
	if !strings.Contains(got, "did not answer within") || strings.Contains(got, "cannot reach") {
		t.Errorf("got %q, want it to say the CA did not answer, not that it cannot be reached", got)
	}
	refused := &url.Error{Op: "Post", URL: "https://ca.example/dir", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	if got := caOutcome("reading order", refused).Error(); !strings.Contains(got, "cannot reach the ACME server") {
		t.Errorf("a refused connection: got %q, want cannot reach the ACME server", got)
	}
}
