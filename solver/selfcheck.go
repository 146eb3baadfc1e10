package solver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// +kubebuilder:rbac:groups="",resources=pods;services,verbs=get;list

const (
	// selfCheckAttempts is how many consecutive correct answers the gateway
	// must give; each GET opens a new connection, so the Service may send it
	// to another gateway replica.
	selfCheckAttempts = 3
	selfCheckTimeout  = 3 * time.Second
	// discoveryTTL is how long a discovered gateway address is reused, and
	// discoveryErrorTTL how long a failed discovery is.
	discoveryTTL      = 30 * time.Second
	discoveryErrorTTL = 2 * time.Second
	// maxBodyPreview is how much of a wrong answer a message quotes.
	maxBodyPreview = 120
)

// SelfCheckUserAgent identifies the self-check's requests in gateway logs.
const SelfCheckUserAgent = "istio-acme-issuer-self-check"

// IngressGateways finds the ingress gateway workload an issuer targets, and
// fetches a challenge's token through the gateway's Service, with the
// challenged host in the Host header, before the CA is asked to validate:
// broken routing is then reported on the request instead of costing one of
// the CA's failed validations. It needs neither DNS nor a hairpin route to
// the gateway's public address.
type IngressGateways struct {
	// Reader lists Pods and Services, normally uncached: gateways are looked
	// up rarely and a cache of every Pod would cost memory.
	Reader client.Reader
	// Client defaults to one that does not follow redirects and does not
	// reuse connections.
	Client *http.Client

	mu    sync.Mutex
	found map[string]discovery // by selector
}

type discovery struct {
	workload *GatewayWorkload
	err      error
	at       time.Time
}

// GatewayWorkload is the ingress gateway that a selector names: its pods'
// labels (which Gateways' selectors are matched against) and the addresses
// of the Services in front of it.
type GatewayWorkload struct {
	// Namespace of the gateway pods, where Istio reads credentialName.
	Namespace string
	PodLabels []map[string]string
	Addresses []string
}

// Workload finds the gateway pods that selector matches and the Services
// (cluster IP and port 80) in front of them.
func (c *IngressGateways) Workload(ctx context.Context, selector map[string]string) (*GatewayWorkload, error) {
	key := labels.SelectorFromSet(selector).String()
	c.mu.Lock()
	d, ok := c.found[key]
	c.mu.Unlock()
	if ok && (time.Since(d.at) < discoveryErrorTTL || (d.err == nil && time.Since(d.at) < discoveryTTL)) {
		return d.workload, d.err
	}
	w, err := c.discover(ctx, selector)
	c.mu.Lock()
	if c.found == nil {
		c.found = map[string]discovery{}
	}
	c.found[key] = discovery{workload: w, err: err, at: time.Now()}
	c.mu.Unlock()
	return w, err
}

func (c *IngressGateways) discover(ctx context.Context, selector map[string]string) (*GatewayWorkload, error) {
	var pods corev1.PodList
	if err := c.Reader.List(ctx, &pods, client.MatchingLabels(selector)); err != nil {
		return nil, fmt.Errorf("listing the ingress gateway pods: %w", err)
	}
	if len(pods.Items) == 0 {
		return nil, fmt.Errorf("no pod has the labels of spec.solver.istio.gatewaySelector %s, so no ingress gateway would serve the challenge; set it to the labels of your ingress gateway pods (kubectl get pods -A --show-labels)", labels.FormatLabels(selector))
	}
	var services []corev1.Service
	for _, ns := range podNamespaces(pods.Items) {
		var list corev1.ServiceList
		if err := c.Reader.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return nil, fmt.Errorf("listing Services in %s: %w", ns, err)
		}
		services = append(services, list.Items...)
	}
	addrs := GatewayServiceAddresses(pods.Items, services)
	if len(addrs) == 0 {
		p := pods.Items[0]
		return nil, fmt.Errorf("no Service with a port 80 selects the ingress gateway pods (such as %s/%s) that spec.solver.istio.gatewaySelector %s matches; the CA could not reach them on port 80", p.Namespace, p.Name, labels.FormatLabels(selector))
	}
	w := &GatewayWorkload{Addresses: addrs, Namespace: pods.Items[0].Namespace}
	for _, p := range pods.Items {
		w.PodLabels = append(w.PodLabels, p.Labels)
	}
	return w, nil
}

// GatewayServiceAddresses returns "clusterIP:80" of every Service that has a
// port 80 and whose selector matches one of the pods.
func GatewayServiceAddresses(pods []corev1.Pod, services []corev1.Service) []string {
	var addrs []string
	for _, svc := range services {
		ip := svc.Spec.ClusterIP
		if len(svc.Spec.Selector) == 0 || ip == "" || ip == corev1.ClusterIPNone || !hasPort(svc, 80) {
			continue
		}
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		for _, p := range pods {
			if p.Namespace == svc.Namespace && sel.Matches(labels.Set(p.Labels)) {
				addrs = append(addrs, net.JoinHostPort(ip, "80"))
				break
			}
		}
	}
	slices.Sort(addrs)
	return slices.Compact(addrs)
}

func hasPort(svc corev1.Service, port int32) bool {
	for _, p := range svc.Spec.Ports {
		if p.Port == port && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
			return true
		}
	}
	return false
}

func podNamespaces(pods []corev1.Pod) []string {
	set := map[string]bool{}
	for _, p := range pods {
		set[p.Namespace] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// Check fetches http://host/.well-known/acme-challenge/token as the CA
// would, but through the gateway Service at addr (its port 80) instead of
// DNS, selfCheckAttempts times, and returns nil when every answer is the
// key. Like Let's Encrypt it follows up to 10 redirects, to http or https on
// ports 80 and 443 only, to the gateway's same address, and does not verify
// the certificate of an HTTPS redirect target.
func (c *IngressGateways) Check(ctx context.Context, addr, host, token, key string) error {
	gatewayIP, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("gateway address %q: %w", addr, err)
	}
	cl := c.Client
	if cl == nil {
		dialer := &net.Dialer{Timeout: selfCheckTimeout}
		cl = &http.Client{
			Timeout: selfCheckTimeout,
			Transport: &http.Transport{
				DisableKeepAlives: true,
				Proxy:             nil,
				// Every name resolves to the gateway, as public DNS would.
				DialContext: func(ctx context.Context, network, target string) (net.Conn, error) {
					_, port, err := net.SplitHostPort(target)
					if err != nil {
						return nil, err
					}
					if port == "80" {
						return dialer.DialContext(ctx, network, addr)
					}
					return dialer.DialContext(ctx, network, net.JoinHostPort(gatewayIP, port))
				},
				// The CA does not verify the certificate of an HTTPS redirect
				// target either; only the routing is checked here.
				TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, //nolint:gosec // see above
			},
			CheckRedirect: followLikeTheCA(host),
		}
	}
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
				return fmt.Errorf("GET %s through the ingress gateway at %s timed out", url, addr)
			}
			return fmt.Errorf("GET %s through the ingress gateway at %s failed: %v", url, addr, err)
		}
		body, err := io.ReadAll(io.LimitReader(res.Body, int64(len(key))+maxBodyPreview))
		_ = res.Body.Close() // the body was read; a close error changes nothing
		if err != nil {
			return fmt.Errorf("GET %s through the ingress gateway at %s: reading the answer: %v", url, addr, err)
		}
		if res.StatusCode == http.StatusOK && string(body) == key {
			continue
		}
		via := ""
		if final := res.Request.URL.String(); final != url {
			via = " after redirects to " + final + ","
		}
		return fmt.Errorf("GET %s through the ingress gateway at %s%s returned %s", url, addr, via, describeAnswer(res, body))
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

func describeAnswer(res *http.Response, body []byte) string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(res.StatusCode))
	if loc := res.Header.Get("Location"); loc != "" {
		fmt.Fprintf(&b, " redirecting to %s", loc)
	}
	preview := strings.TrimSpace(string(body))
	if len(preview) > maxBodyPreview {
		preview = preview[:maxBodyPreview] + "..."
	}
	if preview == "" {
		b.WriteString(" with an empty body")
	} else {
		fmt.Fprintf(&b, " with body %q", preview)
	}
	if res.StatusCode == http.StatusOK {
		b.WriteString(", which is not this challenge's key authorization")
	}
	return b.String()
}
