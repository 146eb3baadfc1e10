package issuer

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// An account the CA told to come back later sends nothing until then, from
// any client built for it, and then sends again.
func TestHoldKeepsAnAccountBackUntilRetryAfter(t *testing.T) {
	var received atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		received.Add(1)
		if r.URL.Path == "/limited" {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()

	now := time.Unix(1_700_000_000, 0)
	hs := &holds{now: func() time.Time { return now }}
	client := func() *http.Client {
		return &http.Client{Transport: &holdTransport{base: http.DefaultTransport, hold: hs.of("ca|ns/account/")}}
	}
	get := func(cl *http.Client, path string) error {
		res, err := cl.Get(srv.URL + path)
		if err == nil {
			res.Body.Close()
		}
		return err
	}

	if err := get(client(), "/limited"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(29 * time.Second)
	err := get(client(), "/order") // a new client for the same account
	var held *heldError
	if !errors.As(err, &held) {
		t.Fatalf("a request 29 s into a 30 s Retry-After: got %v, want it held", err)
	}
	if got := received.Load(); got != 1 {
		t.Fatalf("the CA received %d requests, want only the rate-limited one", got)
	}
	if want := time.Unix(1_700_000_030, 0); !held.until.Equal(want) {
		t.Errorf("held until %s, want %s", held.until, want)
	}
	// Another account of the same CA is not held.
	other := &http.Client{Transport: &holdTransport{base: http.DefaultTransport, hold: hs.of("ca|ns/other/")}}
	if err := get(other, "/order"); err != nil {
		t.Fatalf("another account was held: %v", err)
	}
	now = now.Add(time.Second)
	if err := get(client(), "/order"); err != nil {
		t.Fatalf("after the Retry-After: %v", err)
	}
	if got := received.Load(); got != 3 {
		t.Fatalf("the CA received %d requests, want 3", got)
	}
}

// The ACME client retries a badNonce answer at once, a few times, and
// leaves every other failure to the controller's backoff.
func TestRetryPolicyRetriesOnlyBadNonce(t *testing.T) {
	for _, tc := range []struct {
		status int
		n      int
		want   bool
	}{
		{http.StatusBadRequest, 1, true}, // the client asks only for badNonce
		{http.StatusBadRequest, 3, true},
		{http.StatusBadRequest, 4, false},
		{http.StatusTooManyRequests, 1, false},
		{http.StatusInternalServerError, 1, false},
		{http.StatusServiceUnavailable, 1, false},
	} {
		got := noRetryExceptBadNonce(tc.n, nil, &http.Response{StatusCode: tc.status}) > 0
		if got != tc.want {
			t.Errorf("status %d, attempt %d: retry %v, want %v", tc.status, tc.n, got, tc.want)
		}
	}
}
