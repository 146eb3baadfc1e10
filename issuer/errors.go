package issuer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/cert-manager/cert-manager/third_party/forked/acme"
	"github.com/cert-manager/issuer-lib/controllers/signer"

	"github.com/istio-acme/istio-acme-issuer/internal/metrics"
)

// ACME problem types (RFC 8555 section 6.7) that decide what happens next.
const (
	problemPrefix                  = "urn:ietf:params:acme:error:"
	problemRateLimited             = problemPrefix + "rateLimited"
	problemRejectedIdentifier      = problemPrefix + "rejectedIdentifier"
	problemUnsupportedIdentifier   = problemPrefix + "unsupportedIdentifier"
	problemCAA                     = problemPrefix + "caa"
	problemMalformed               = problemPrefix + "malformed"
	problemBadCSR                  = problemPrefix + "badCSR"
	problemExternalAccountRequired = problemPrefix + "externalAccountRequired"
	problemInvalidContact          = problemPrefix + "invalidContact"
	problemUnsupportedContact      = problemPrefix + "unsupportedContact"
	problemUnauthorized            = problemPrefix + "unauthorized"
	problemUserActionRequired      = problemPrefix + "userActionRequired"
)

// defaultRateLimitWait is how long to wait on a rateLimited answer that
// carries no Retry-After.
const defaultRateLimitWait = time.Minute

// caOutcome classifies an error returned by the CA during an order, saying
// what the request should do next: wait (rate limited), fail for good
// (the CA will never accept this request), or retry with backoff.
func caOutcome(step string, err error) error {
	var held *heldError
	if errors.As(err, &held) {
		return signer.PendingError{Err: fmt.Errorf("%s: %w", step, held), RequeueAfter: time.Until(held.until)}
	}
	var ae *acme.Error
	if !errors.As(err, &ae) {
		metrics.CAErrors.WithLabelValues("transport").Inc()
		return fmt.Errorf("%s: %w", step, describeTransport(err))
	}
	metrics.CAErrors.WithLabelValues(metrics.ProblemType(ae.ProblemType)).Inc()
	detail := fmt.Sprintf("%s: the CA answered %s", step, problemText(ae))
	switch ae.ProblemType {
	case problemRateLimited:
		wait := defaultRateLimitWait
		if d, ok := retryAfter(ae.Header); ok {
			wait = d
		}
		return signer.PendingError{
			Err:          fmt.Errorf("%s; retrying after %s", detail, wait.Round(time.Second)),
			RequeueAfter: wait,
		}
	case problemRejectedIdentifier, problemUnsupportedIdentifier, problemCAA, problemMalformed, problemBadCSR:
		return signer.PermanentError{Err: errors.New(detail)}
	}
	return errors.New(detail)
}

// problemText renders an ACME problem with its subproblems, e.g.
// "rejectedIdentifier (403): Error creating new order :: ... [a.example: ...]".
func problemText(ae *acme.Error) string {
	var b strings.Builder
	kind := strings.TrimPrefix(ae.ProblemType, problemPrefix)
	if kind == "" {
		kind = "an error"
	}
	fmt.Fprintf(&b, "%s (HTTP %d)", kind, ae.StatusCode)
	if ae.Detail != "" {
		fmt.Fprintf(&b, ": %s", ae.Detail)
	}
	for _, sp := range ae.Subproblems {
		fmt.Fprintf(&b, " [%s: %s]", sp.Identifier.Value, sp.Detail)
	}
	return b.String()
}

func retryAfter(h http.Header) (time.Duration, bool) {
	v := h.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	if secs, err := time.ParseDuration(strings.TrimSpace(v) + "s"); err == nil && secs >= 0 {
		return secs, true
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d, true
		}
		return 0, true
	}
	return 0, false
}

// describeTransport turns network and TLS failures into messages that say
// what to fix.
func describeTransport(err error) error {
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostnameErr      x509.HostnameError
		certInvalid      x509.CertificateInvalidError
		verifyErr        *tls.CertificateVerificationError
		dnsErr           *net.DNSError
		opErr            *net.OpError
		urlErr           *url.Error
		held             *heldError
	)
	switch {
	case errors.As(err, &held):
		return held // not a network fault: nothing was sent
	case errors.As(err, &unknownAuthority), errors.As(err, &verifyErr), errors.As(err, &certInvalid):
		return fmt.Errorf("TLS verification of the ACME server failed (%w); if the server uses a private CA, put that CA's PEM certificate in spec.caBundle", err)
	case errors.As(err, &hostnameErr):
		return fmt.Errorf("the ACME server's TLS certificate does not match its host name (%w); check spec.server", err)
	case errors.As(err, &dnsErr):
		return fmt.Errorf("cannot resolve the ACME server's host (%w); check spec.server and the cluster's DNS", err)
	case answerTimedOut(err):
		return fmt.Errorf("the ACME server took the request but did not answer within %s (%w); it is slow or overloaded: the request is retried with backoff", caRequestTimeout, err)
	case errors.As(err, &opErr), errors.As(err, &urlErr):
		return fmt.Errorf("cannot reach the ACME server (%w); check spec.server and that egress to it is allowed", err)
	}
	return err
}

// answerTimedOut reports whether the request timed out after the connection
// was made: the server is reachable but has not answered.
func answerTimedOut(err error) bool {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return false
	}
	var timeout interface{ Timeout() bool }
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &timeout) && timeout.Timeout())
}

// mayHaveReachedCA reports whether a failed request may have been acted on
// by the CA: false when the CA answered with an error, when nothing was
// sent (the account is held, the connection was refused, the name did not
// resolve, TLS verification failed), true when the answer was lost after
// the request may have arrived (a reset, a timeout).
func mayHaveReachedCA(err error) bool {
	var (
		ae               *acme.Error
		held             *heldError
		dnsErr           *net.DNSError
		unknownAuthority x509.UnknownAuthorityError
		hostnameErr      x509.HostnameError
		verifyErr        *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &ae), errors.As(err, &held), errors.As(err, &dnsErr),
		errors.As(err, &unknownAuthority), errors.As(err, &hostnameErr), errors.As(err, &verifyErr),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		return false
	}
	return true
}

// isNotFound reports the CA's 404: the order or object is gone there.
func isNotFound(err error) bool {
	var ae *acme.Error
	return errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound
}
