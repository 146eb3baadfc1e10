package solver

import (
	"context"
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
	w := &GatewayWorkload{Addresses: addrs}
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

// Check fetches http://host/.well-known/acme-challenge/token through addr
// selfCheckAttempts times and returns nil when every answer is the key.
func (c *IngressGateways) Check(ctx context.Context, addr, host, token, key string) error {
	cl := c.Client
	if cl == nil {
		cl = &http.Client{
			Timeout:       selfCheckTimeout,
			Transport:     &http.Transport{DisableKeepAlives: true, Proxy: nil},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	path := ChallengePathPrefix + token
	for range selfCheckAttempts {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			return err
		}
		req.Host = host
		req.Header.Set("User-Agent", SelfCheckUserAgent)
		res, err := cl.Do(req)
		if err != nil {
			var uerr interface{ Timeout() bool }
			if errors.As(err, &uerr) && uerr.Timeout() {
				return fmt.Errorf("GET http://%s%s through the ingress gateway at %s timed out", host, path, addr)
			}
			return fmt.Errorf("GET http://%s%s through the ingress gateway at %s failed: %v", host, path, addr, err)
		}
		body, err := io.ReadAll(io.LimitReader(res.Body, int64(len(key))+maxBodyPreview))
		_ = res.Body.Close() // the body was read; a close error changes nothing
		if err != nil {
			return fmt.Errorf("GET http://%s%s through the ingress gateway at %s: reading the answer: %v", host, path, addr, err)
		}
		if res.StatusCode == http.StatusOK && string(body) == key {
			continue
		}
		return fmt.Errorf("GET http://%s%s through the ingress gateway at %s returned %s", host, path, addr, describeAnswer(res, body))
	}
	return nil
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
