package issuer

import (
	"fmt"
	"net/http"
	"sync"
	"time"
)

// caHold keeps an ACME account from asking its CA anything before the
// Retry-After of the CA's last 429 or 503 answer has passed. Every request
// of the account, from any CertificateRequest or from the issuer's check,
// goes through it: a rate limit is the account's, not one request's.
type caHold struct {
	mu     sync.Mutex
	until  time.Time
	reason string
	now    func() time.Time
}

// heldError is returned instead of sending a request while the account is
// held.
type heldError struct {
	until  time.Time
	reason string
}

func (e *heldError) Error() string {
	return fmt.Sprintf("the CA asked this account to wait until %s (%s); nothing is sent to it before then", e.until.UTC().Format(time.RFC3339), e.reason)
}

// check returns a heldError while the account is held.
func (h *caHold) check() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.now().Before(h.until) {
		return &heldError{until: h.until, reason: h.reason}
	}
	return nil
}

// observe holds the account after an answer that asks the client to come
// back later.
func (h *caHold) observe(res *http.Response) {
	if res.StatusCode != http.StatusTooManyRequests && res.StatusCode != http.StatusServiceUnavailable {
		return
	}
	d, ok := retryAfter(res.Header)
	if !ok || d <= 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if until := h.now().Add(d); until.After(h.until) {
		h.until = until
		h.reason = fmt.Sprintf("HTTP %d with Retry-After %s from %s", res.StatusCode, res.Header.Get("Retry-After"), res.Request.URL.Path)
	}
}

// holdTransport sends an account's requests through its hold, and stops
// the read of an order that follows a finalize (finalize.go).
type holdTransport struct {
	base http.RoundTripper
	hold *caHold
}

func (t *holdTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if stoppedAfterFinalize(req) {
		return nil, errFinalizeSent
	}
	if err := t.hold.check(); err != nil {
		return nil, err
	}
	res, err := t.base.RoundTrip(req)
	if err == nil {
		t.hold.observe(res)
	}
	return res, err
}

// holds keeps one caHold per account, so that clients rebuilt for the same
// account (a restart of the issuer's cache entry, a new generation of its
// spec) share it.
type holds struct {
	mu  sync.Mutex
	m   map[string]*caHold
	now func() time.Time
}

// of returns the hold of the account identified by key (the CA's directory
// and the Secret holding the account key).
func (h *holds) of(key string) *caHold {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[string]*caHold{}
	}
	if h.m[key] == nil {
		now := h.now
		if now == nil {
			now = time.Now
		}
		h.m[key] = &caHold{now: now}
	}
	return h.m[key]
}

// noRetryExceptBadNonce is the ACME client's retry policy: a badNonce
// answer is retried at once with a fresh nonce, as RFC 8555 section 6.5
// expects; anything else comes back to the controller, which holds the
// account on Retry-After and otherwise retries the request with its own
// backoff instead of blocking a worker.
func noRetryExceptBadNonce(n int, _ *http.Request, res *http.Response) time.Duration {
	if res != nil && res.StatusCode == http.StatusBadRequest && n <= 3 {
		return time.Millisecond
	}
	return 0
}
