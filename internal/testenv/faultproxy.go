package testenv

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Endpoint names an ACME resource as the fault proxy classifies requests,
// from the paths Pebble serves.
type Endpoint string

const (
	EndpointDirectory     Endpoint = "directory"
	EndpointNonce         Endpoint = "newNonce"
	EndpointAccount       Endpoint = "newAccount"
	EndpointNewOrder      Endpoint = "newOrder"
	EndpointOrder         Endpoint = "order"
	EndpointAuthorization Endpoint = "authorization"
	EndpointChallenge     Endpoint = "challenge"
	EndpointFinalize      Endpoint = "finalize"
	EndpointCertificate   Endpoint = "certificate"
	EndpointRenewalInfo   Endpoint = "renewalInfo"
	EndpointOther         Endpoint = "other"
)

// pebblePaths maps Pebble's URL paths (prefixes) to endpoints.
var pebblePaths = []struct {
	prefix string
	ep     Endpoint
}{
	{"/dir", EndpointDirectory},
	{"/nonce-plz", EndpointNonce},
	{"/sign-me-up", EndpointAccount},
	{"/order-plz", EndpointNewOrder},
	{"/my-order/", EndpointOrder},
	{"/authZ/", EndpointAuthorization},
	{"/chalZ/", EndpointChallenge},
	{"/finalize-order/", EndpointFinalize},
	{"/certZ/", EndpointCertificate},
	{"/draft-ietf-acme-ari-03/renewalInfo/", EndpointRenewalInfo},
}

func classify(path string) Endpoint {
	for _, p := range pebblePaths {
		if strings.HasPrefix(path, p.prefix) {
			return p.ep
		}
	}
	return EndpointOther
}

// FaultKind is a way the proxy makes a request fail.
type FaultKind string

const (
	// Fault500 and Fault503 answer with that status and an ACME
	// serverInternal problem; the CA never sees the request.
	Fault500 FaultKind = "500"
	Fault503 FaultKind = "503"
	// FaultReset closes the connection without an answer. With AfterCA the
	// CA handled the request first and only its answer is lost.
	FaultReset FaultKind = "reset"
	// FaultTimeout holds the answer for Delay (past the client's timeout)
	// and then closes the connection; with AfterCA the CA handled it.
	FaultTimeout FaultKind = "timeout"
	// FaultRateLimited answers 429 rateLimited with Retry-After.
	FaultRateLimited FaultKind = "rateLimited"
	// FaultBadNonce answers 400 badNonce, as a CA does for a stale nonce.
	FaultBadNonce FaultKind = "badNonce"
	// FaultProblem answers the ACME problem Problem with HTTP status Code;
	// the CA never sees the request.
	FaultProblem FaultKind = "problem"
	// FaultStatus lets the CA answer and changes the answer's status field
	// to Status: an order or authorization in a state the CA here reaches
	// too fast (processing) or never on its own (deactivated).
	FaultStatus FaultKind = "status"
)

// FaultRule makes a fraction of the POSTs to an endpoint fail in one way.
type FaultRule struct {
	Endpoint Endpoint
	Kind     FaultKind
	// Fraction of the matching requests that fail, 0 to 1.
	Fraction float64
	// AfterCA forwards the request before resetting or timing out, so the
	// CA acted on a request whose answer the client never gets.
	AfterCA bool
	// Delay is how long a timeout holds the connection.
	Delay time.Duration
	// RetryAfter is the Retry-After of a rateLimited answer, whole seconds.
	RetryAfter time.Duration
	// PostAsGet limits the rule to reads (POSTs with an empty payload),
	// such as reading a challenge rather than accepting it.
	PostAsGet bool
	// Problem and Code are the problem type (without the ACME URN prefix)
	// and HTTP status of a FaultProblem answer.
	Problem string
	Code    int
	// Status is the state a FaultStatus answer reports.
	Status string
}

// CARequest is one request the proxy saw.
type CARequest struct {
	At       time.Time
	Endpoint Endpoint
	URL      string
	// Account is the JWS key ID (the account URL) of a signed request.
	Account string
	// Names are the identifiers of a new order, or the name of the
	// authorization a challenge belongs to.
	Names []string
	// Replaces is the certificate a new order names as the one it
	// replaces (RFC 9773), or "".
	Replaces string
	// Accept is a POST with a payload to a challenge: asking the CA to
	// validate it (a POST-as-GET has an empty payload).
	Accept bool
	// Fault is the fault injected, or "".
	Fault FaultKind
	// AfterCA says the CA handled the request before the fault.
	AfterCA bool
	// Status is the status the client got (0 when the connection failed).
	Status int
	// Location is the Location header of the answer the CA gave (the new
	// order's URL for a new order), even when the client did not get it.
	Location string
}

// HeldViolation is a request an account sent before the Retry-After it was
// given had passed.
type HeldViolation struct {
	Account   string
	Request   CARequest
	HeldUntil time.Time
}

// FaultProxy is an HTTPS reverse proxy in front of an ACME server (Pebble)
// on loopback that injects faults into a fraction of requests by endpoint
// and records every request. Pebble builds its URLs from the Host header,
// so the URLs it hands out point at the proxy.
type FaultProxy struct {
	// DirectoryURL is the directory through the proxy.
	DirectoryURL string

	proxy *httputil.ReverseProxy
	srv   *http.Server

	mu       sync.Mutex
	rules    []FaultRule
	rng      *rand.Rand
	requests []CARequest
	// challengeNames maps a challenge URL to the name of its
	// authorization, learnt from the authorizations the CA returns.
	challengeNames map[string]string
	// heldUntil is, per account, the end of the last Retry-After given.
	heldUntil  map[string]time.Time
	violations []HeldViolation
	// noRenewalInfo hides the renewalInfo resource from the directory: a
	// CA without ARI.
	noRenewalInfo bool
}

// StartFaultProxy starts a proxy to p, serving HTTPS with a certificate
// from the same CA as Pebble's (so spec.caBundle stays the same), and stops
// it when the test ends. seed makes the choice of failing requests
// repeatable.
func StartFaultProxy(t testing.TB, p *Pebble, seed uint64) *FaultProxy {
	t.Helper()
	target, err := url.Parse(p.DirectoryURL)
	if err != nil {
		t.Fatal(err)
	}
	target.Path = ""
	f := &FaultProxy{
		rng:            rand.New(rand.NewPCG(seed, seed^0x5eed)),
		challengeNames: map[string]string{},
		heldUntil:      map[string]time.Time{},
	}
	upstream := p.HTTPClient().Transport.(*http.Transport).Clone()
	f.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // Pebble's URLs then name the proxy
		},
		Transport: upstream,
		// A failed forward must not look like an answer from the CA.
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			panic(http.ErrAbortHandler)
		},
	}
	cert, err := tls.X509KeyPair(p.servingCertPEM, p.servingKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", Addr(FreePort(t)), &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	f.DirectoryURL = "https://" + ln.Addr().String() + "/dir"
	f.srv = &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second, ErrorLog: discardLog}
	go func() { _ = f.srv.Serve(ln) }() // ends with Close
	t.Cleanup(func() { _ = f.srv.Close() })
	return f
}

// HideRenewalInfo makes the directory offer no renewalInfo, as a CA without
// ARI (RFC 9773); clients that read the directory before still know it.
func (f *FaultProxy) HideRenewalInfo() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.noRenewalInfo = true
}

// SetRules replaces the fault rules; nil injects nothing.
func (f *FaultProxy) SetRules(rules []FaultRule) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = slices.Clone(rules)
}

// Requests returns every request so far, in arrival order.
func (f *FaultProxy) Requests() []CARequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

// HeldViolations returns the requests sent before a Retry-After passed.
func (f *FaultProxy) HeldViolations() []HeldViolation {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.violations)
}

// jws is the flattened JSON serialization of a signed ACME request.
type jws struct {
	Protected string `json:"protected"`
	Payload   string `json:"payload"`
}

func (f *FaultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	req := CARequest{At: time.Now(), Endpoint: classify(r.URL.Path), URL: "https://" + r.Host + r.URL.Path}
	var payload []byte
	if r.Method == http.MethodPost {
		var msg jws
		if json.Unmarshal(body, &msg) == nil {
			var protected struct {
				KID string `json:"kid"`
			}
			if raw, err := base64.RawURLEncoding.DecodeString(msg.Protected); err == nil {
				_ = json.Unmarshal(raw, &protected) // an unreadable header stays unattributed
			}
			req.Account = protected.KID
			payload, _ = base64.RawURLEncoding.DecodeString(msg.Payload)
		}
	}
	switch req.Endpoint {
	case EndpointNewOrder:
		var order struct {
			Identifiers []struct{ Value string } `json:"identifiers"`
			Replaces    string                   `json:"replaces"`
		}
		_ = json.Unmarshal(payload, &order) // Pebble judges malformed orders
		for _, id := range order.Identifiers {
			req.Names = append(req.Names, id.Value)
		}
		sort.Strings(req.Names)
		req.Replaces = order.Replaces
	case EndpointChallenge:
		req.Accept = len(payload) > 0
	}

	f.mu.Lock()
	if req.Endpoint == EndpointChallenge {
		if name, ok := f.challengeNames[req.URL]; ok {
			req.Names = []string{name}
		}
	}
	if until, held := f.heldUntil[req.Account]; held && req.Account != "" && req.At.Before(until) {
		f.violations = append(f.violations, HeldViolation{Account: req.Account, Request: req, HeldUntil: until})
	}
	rule, faulty := f.pick(req.Endpoint, r.Method, len(payload) == 0)
	hideARI := f.noRenewalInfo
	f.mu.Unlock()

	if req.Endpoint == EndpointDirectory && hideARI {
		f.serveDirectoryWithoutARI(w, r, req)
		return
	}

	if faulty {
		req.Fault, req.AfterCA = rule.Kind, rule.AfterCA
	}
	rec := &answerRecorder{header: http.Header{}}
	switch {
	case !faulty:
		rec.forwardTo = w
		f.proxy.ServeHTTP(rec, r)
	case rule.AfterCA:
		f.proxy.ServeHTTP(rec, r) // the CA acts; the client hears nothing
	case rule.Kind == FaultStatus:
		f.proxy.ServeHTTP(rec, r) // the CA acts; the client hears another state
	}
	req.Location = rec.header.Get("Location")
	f.learnChallenges(req, rec.body.Bytes())
	if !faulty {
		req.Status = rec.status
		f.record(req, rec.header)
		return
	}

	switch rule.Kind {
	case Fault500, Fault503:
		req.Status, _ = strconv.Atoi(string(rule.Kind))
		f.record(req, nil)
		problem(w, req.Status, "serverInternal", "injected fault", 0)
	case FaultRateLimited:
		req.Status = http.StatusTooManyRequests
		h := http.Header{"Retry-After": {strconv.Itoa(int(rule.RetryAfter / time.Second))}}
		f.record(req, h)
		problem(w, req.Status, "rateLimited", "injected rate limit", rule.RetryAfter)
	case FaultBadNonce:
		req.Status = http.StatusBadRequest
		f.record(req, nil)
		problem(w, req.Status, "badNonce", "injected stale nonce", 0)
	case FaultProblem:
		req.Status = rule.Code
		f.record(req, nil)
		problem(w, req.Status, rule.Problem, "injected "+rule.Problem, 0)
	case FaultStatus:
		req.Status = rec.status
		f.record(req, rec.header)
		var answer map[string]any
		if rec.status != http.StatusOK || json.Unmarshal(rec.body.Bytes(), &answer) != nil {
			writeAnswer(w, rec, rec.body.Bytes()) // an error answer stays as it is
			return
		}
		answer["status"] = rule.Status
		body, err := json.Marshal(answer)
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		writeAnswer(w, rec, body)
	case FaultTimeout:
		f.record(req, nil)
		select {
		case <-time.After(rule.Delay):
		case <-r.Context().Done():
		}
		panic(http.ErrAbortHandler)
	default: // FaultReset
		f.record(req, nil)
		panic(http.ErrAbortHandler)
	}
}

// serveDirectoryWithoutARI answers the CA's directory without its
// renewalInfo resource.
func (f *FaultProxy) serveDirectoryWithoutARI(w http.ResponseWriter, r *http.Request, req CARequest) {
	rec := &answerRecorder{header: http.Header{}}
	f.proxy.ServeHTTP(rec, r)
	var dir map[string]any
	if err := json.Unmarshal(rec.body.Bytes(), &dir); err != nil {
		panic(http.ErrAbortHandler)
	}
	delete(dir, "renewalInfo")
	body, err := json.Marshal(dir)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	req.Status = rec.status
	f.record(req, rec.header)
	writeAnswer(w, rec, body)
}

// writeAnswer passes the CA's answer in rec on to the client with another
// body: its headers (the nonce among them) stay.
func writeAnswer(w http.ResponseWriter, rec *answerRecorder, body []byte) {
	for k, v := range rec.header {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(rec.status)
	_, _ = w.Write(body)
}

// pick decides whether this request fails, and how. Only signed POSTs
// fail: a GET of the directory or a nonce has no account to blame.
func (f *FaultProxy) pick(ep Endpoint, method string, read bool) (FaultRule, bool) {
	if method != http.MethodPost {
		return FaultRule{}, false
	}
	for _, rule := range f.rules {
		if rule.Endpoint == ep && (!rule.PostAsGet || read) && f.rng.Float64() < rule.Fraction {
			return rule, true
		}
	}
	return FaultRule{}, false
}

// record keeps the request and, for an answer with Retry-After, when its
// account may ask again.
func (f *FaultProxy) record(req CARequest, h http.Header) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, req)
	if v := h.Get("Retry-After"); v != "" && req.Account != "" && req.Status >= 400 {
		if secs, err := strconv.Atoi(v); err == nil {
			until := req.At.Add(time.Duration(secs) * time.Second)
			if until.After(f.heldUntil[req.Account]) {
				f.heldUntil[req.Account] = until
			}
		}
	}
}

// learnChallenges remembers which name each challenge of an authorization
// the CA returned proves.
func (f *FaultProxy) learnChallenges(req CARequest, body []byte) {
	var authz struct {
		Identifier struct{ Value string } `json:"identifier"`
		Challenges []struct {
			URL string `json:"url"`
		} `json:"challenges"`
	}
	if req.Endpoint != EndpointAuthorization || json.Unmarshal(body, &authz) != nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ch := range authz.Challenges {
		f.challengeNames[ch.URL] = authz.Identifier.Value
	}
}

// problem writes an RFC 7807 ACME problem. It carries no Replay-Nonce, so
// the client fetches a new nonce for its next request.
func problem(w http.ResponseWriter, status int, kind, detail string, retryAfter time.Duration) {
	w.Header().Set("Content-Type", "application/problem+json")
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter/time.Second)))
	}
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"type":"urn:ietf:params:acme:error:%s","detail":%q,"status":%d}`, kind, detail, status)
}

// answerRecorder keeps the CA's answer (status, headers, body) and, when
// forwardTo is set, passes it on to the client as it comes.
type answerRecorder struct {
	forwardTo http.ResponseWriter
	header    http.Header
	status    int
	body      bytes.Buffer
}

func (a *answerRecorder) Header() http.Header {
	if a.forwardTo != nil {
		return a.forwardTo.Header()
	}
	return a.header
}

func (a *answerRecorder) WriteHeader(code int) {
	a.status = code
	if a.forwardTo != nil {
		a.header = a.forwardTo.Header().Clone()
		a.forwardTo.WriteHeader(code)
	}
}

func (a *answerRecorder) Write(p []byte) (int, error) {
	if a.status == 0 {
		a.WriteHeader(http.StatusOK)
	}
	a.body.Write(p)
	if a.forwardTo != nil {
		return a.forwardTo.Write(p)
	}
	return len(p), nil
}

// discardLog silences the server's log of aborted handlers, which are the
// faults it injects on purpose.
var discardLog = log.New(io.Discard, "", 0)
