package solver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const (
	// selfCheckAttempts is how many consecutive correct answers the gateway
	// must give; each GET opens a new connection, so the Service may send it
	// to another gateway replica.
	selfCheckAttempts = 3
	selfCheckTimeout  = 3 * time.Second
	// maxAnswer bounds how much of a wrong answer is read (to tell its
	// length); none of it is quoted.
	maxAnswer = 64 << 10
)

// SelfCheck fetches a challenge's token the way the CA will, before the CA
// is asked to validate: through the gateway's Service with the challenged
// host in the Host header (Check: needs neither DNS nor a hairpin route to
// the gateway's public address), and optionally through DNS
// (CheckThroughDNS). Broken routing is then reported on the request
// instead of costing one of the CA's failed validations.
type SelfCheck struct {
	// Resolver resolves challenged hosts for CheckThroughDNS; nil is the
	// system's resolver.
	Resolver *net.Resolver
}

// SelfCheckUserAgent identifies the self-check's requests in gateway logs.
const SelfCheckUserAgent = "istio-acme-issuer-self-check"

// Check fetches http://host/.well-known/acme-challenge/token as the CA
// would, but through the gateway Service at addr (its port 80) instead of
// DNS, selfCheckAttempts times, and returns nil when every answer is the
// key. Like Let's Encrypt it follows up to 10 redirects, to http or https on
// ports 80 and 443 only, to the gateway's same address, and does not verify
// the certificate of an HTTPS redirect target.
func (c *SelfCheck) Check(ctx context.Context, addr, host, token, key string) error {
	gatewayIP, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("gateway address %q: %w", addr, err)
	}
	dialer := &net.Dialer{Timeout: selfCheckTimeout}
	// Every name resolves to the gateway, as public DNS would.
	cl := selfCheckClient(host, func(ctx context.Context, network, target string) (net.Conn, error) {
		_, port, err := net.SplitHostPort(target)
		if err != nil {
			return nil, err
		}
		if port == "80" {
			return dialer.DialContext(ctx, network, addr)
		}
		return dialer.DialContext(ctx, network, net.JoinHostPort(gatewayIP, port))
	})
	return fetchToken(ctx, cl, "through the ingress gateway at "+addr, host, token, key)
}

// CheckThroughDNS fetches the token as the CA will, resolving host through
// DNS (Resolver) and connecting to the address it returns, and returns the
// addresses the host resolved to.
func (c *SelfCheck) CheckThroughDNS(ctx context.Context, host, token, key string) ([]string, error) {
	resolver := c.Resolver
	if resolver == nil {
		resolver = net.DefaultResolver
	}
	ips, err := resolver.LookupHost(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %v; the CA could not reach it either unless public DNS differs from the cluster's", host, err)
	}
	dialer := &net.Dialer{Timeout: selfCheckTimeout, Resolver: resolver}
	cl := selfCheckClient(host, dialer.DialContext)
	if err := fetchToken(ctx, cl, "through DNS ("+host+" resolves to "+strings.Join(ips, ", ")+")", host, token, key); err != nil {
		return nil, err
	}
	return ips, nil
}

// selfCheckClient fetches like the CA: no connection reuse (each GET may
// reach another gateway replica), no proxy, redirects as the CA follows
// them, and no verification of an HTTPS redirect target's certificate.
func selfCheckClient(host string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Client {
	return &http.Client{
		Timeout: selfCheckTimeout,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			Proxy:             nil,
			DialContext:       dial,
			// The CA does not verify the certificate of an HTTPS redirect
			// target either; only the routing is checked here.
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, //nolint:gosec // see above
		},
		CheckRedirect: followLikeTheCA(host),
	}
}

// fetchToken GETs the token selfCheckAttempts times and returns nil when
// every answer is the key; where says how the request travelled.
func fetchToken(ctx context.Context, cl *http.Client, where, host, token, key string) error {
	url := "http://" + host + ChallengePathPrefix + token
	for range selfCheckAttempts {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", SelfCheckUserAgent)
		res, err := cl.Do(req)
		if err != nil {
			var terr interface{ Timeout() bool }
			if errors.As(err, &terr) && terr.Timeout() {
				return fmt.Errorf("GET %s %s timed out", url, where)
			}
			return fmt.Errorf("GET %s %s failed: %s", url, where, stableNetError(err))
		}
		body, err := io.ReadAll(io.LimitReader(res.Body, maxAnswer+1))
		_ = res.Body.Close() // the body was read; a close error changes nothing
		if err != nil {
			return fmt.Errorf("GET %s %s: reading the answer: %v", url, where, err)
		}
		if res.StatusCode == http.StatusOK && string(body) == key {
			continue
		}
		via := ""
		if final := res.Request.URL.String(); final != url {
			via = " after redirects to " + final + ","
		}
		return fmt.Errorf("GET %s %s%s returned %s", url, where, via, describeAnswer(res, body))
	}
	return nil
}

// followLikeTheCA allows the redirects Let's Encrypt follows for HTTP-01:
// at most 10, to http or https on ports 80 and 443. Only the challenged
// host is followed, since only it is known to resolve to the gateway.
func followLikeTheCA(host string) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return fmt.Errorf("more than 10 redirects")
		}
		u := req.URL
		if u.Scheme != "http" && u.Scheme != "https" {
			return fmt.Errorf("redirect to %s: the CA follows only http and https", u)
		}
		if p := u.Port(); p != "" && p != "80" && p != "443" {
			return fmt.Errorf("redirect to %s: the CA follows only ports 80 and 443", u)
		}
		if !strings.EqualFold(u.Hostname(), host) {
			return fmt.Errorf("redirect to %s: another host than %s", u, host)
		}
		return nil
	}
}

// describeAnswer says what a wrong answer was without quoting it: its
// status, where it came from and its length. The message lands in the
// request's status, which the requesting namespace reads, and whatever
// answered may be another team's Service.
func describeAnswer(res *http.Response, body []byte) string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(res.StatusCode))
	if loc := res.Header.Get("Location"); loc != "" {
		fmt.Fprintf(&b, " redirecting to %s", loc)
	}
	switch n := len(body); {
	case n == 0:
		b.WriteString(" with an empty body")
	case n > maxAnswer:
		fmt.Fprintf(&b, " with a body of over %d bytes", maxAnswer)
	default:
		fmt.Fprintf(&b, " with a %d-byte body", n)
	}
	b.WriteString(" " + answerSource(res))
	if res.StatusCode == http.StatusOK {
		b.WriteString(", which is not this challenge's key authorization")
	}
	return b.String()
}

// answerSource tells who answered: the token server marks its answers;
// Envoy adds x-envoy-upstream-service-time to what a backend answered and
// answers itself (no route, a redirect, a direct response) without it.
func answerSource(res *http.Response) string {
	switch {
	case res.Header.Get(TokenServerHeader) != "" && res.StatusCode == http.StatusServiceUnavailable:
		return "from the token server (it could not read the challenge or what proves it ours: its log says why)"
	case res.Header.Get(TokenServerHeader) != "":
		return "from the token server (it knows no challenge for this token and host)"
	case res.Header.Get("X-Envoy-Upstream-Service-Time") != "":
		return "from a Service that is not the token server (a route of yours, or another destination)"
	case strings.EqualFold(res.Header.Get("Server"), "istio-envoy"):
		return "from the gateway itself (no route for the path, a redirect or a direct response)"
	}
	return "from something that is not the token server"
}

// ephemeralAddress is a client's own address in Go's network errors
// ("read tcp 10.0.0.7:53114->10.96.0.10:80: ..."): its port changes with
// every connection.
var ephemeralAddress = regexp.MustCompile(`(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]):\d+->`)

// stableNetError describes a failed request in words that do not change
// from one attempt to the next for the same fault (the client's address is
// left out), so that a message a user reads (and the status write and Event
// that carry it) changes only when the fault does.
func stableNetError(err error) string {
	return ephemeralAddress.ReplaceAllString(err.Error(), "")
}
