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
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
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
	// Resolver resolves challenged hosts for CheckThroughDNS; nil is the
	// system's resolver.
	Resolver *net.Resolver

	mu    sync.Mutex
	found map[string]discovery // by selector
}

type discovery struct {
	workload *GatewayWorkload
	err      error
	at       time.Time
}

// GatewayWorkload is the ingress gateway that a selector names: its pods'
// labels (which Gateways' selectors are matched against), the addresses of
// the Services in front of it, and which of its ports the CA's requests
// reach.
type GatewayWorkload struct {
	// Target is the issuer's entry that names this workload.
	Target v1alpha1.GatewayWorkloadSelector
	// Namespace of the gateway pods, where Istio reads credentialName.
	Namespace string
	PodLabels []map[string]string
	// Addresses are "clusterIP:80" of the Services in front of the pods.
	Addresses []string
	// HTTPPorts and HTTPSPorts are the pod ports behind the Services' ports
	// 80 and 443, where the CA's requests (and its redirects to HTTPS)
	// arrive.
	HTTPPorts, HTTPSPorts []uint32
	// servicePorts maps each Service port number to the pod ports behind
	// it: Istio binds a Gateway server whose port number is a Service port
	// to that Service's target port, and any other number as is.
	servicePorts map[uint32][]uint32
}

// ListenPorts returns the pod ports on which Istio binds a Gateway server
// with this port number on the workload.
func (w *GatewayWorkload) ListenPorts(number uint32) []uint32 {
	if ports, ok := w.servicePorts[number]; ok {
		return ports
	}
	return []uint32{number}
}

// Describe names the workload in messages.
func (w *GatewayWorkload) Describe() string {
	return describeTarget(w.Target)
}

func describeTarget(t v1alpha1.GatewayWorkloadSelector) string {
	s := "the ingress gateway pods with labels " + labels.FormatLabels(t.Selector)
	if t.Namespace != "" {
		s += " in namespace " + t.Namespace
	}
	return s
}

// Workload finds the gateway pods that target names and the Services in
// front of them (their cluster IPs and port mappings).
func (c *IngressGateways) Workload(ctx context.Context, target v1alpha1.GatewayWorkloadSelector) (*GatewayWorkload, error) {
	key := target.Namespace + "/" + labels.SelectorFromSet(target.Selector).String()
	c.mu.Lock()
	d, ok := c.found[key]
	c.mu.Unlock()
	if ok && (time.Since(d.at) < discoveryErrorTTL || (d.err == nil && time.Since(d.at) < discoveryTTL)) {
		return d.workload, d.err
	}
	w, err := c.discover(ctx, target)
	c.mu.Lock()
	if c.found == nil {
		c.found = map[string]discovery{}
	}
	c.found[key] = discovery{workload: w, err: err, at: time.Now()}
	c.mu.Unlock()
	return w, err
}

func (c *IngressGateways) discover(ctx context.Context, target v1alpha1.GatewayWorkloadSelector) (*GatewayWorkload, error) {
	var pods corev1.PodList
	opts := []client.ListOption{client.MatchingLabels(target.Selector)}
	if target.Namespace != "" {
		opts = append(opts, client.InNamespace(target.Namespace))
	}
	if err := c.Reader.List(ctx, &pods, opts...); err != nil {
		return nil, fmt.Errorf("listing %s: %w", describeTarget(target), err)
	}
	if len(pods.Items) == 0 {
		return nil, fmt.Errorf("no pod has the labels %s%s, so no ingress gateway would serve the challenge; set the selector to the labels of your ingress gateway pods (kubectl get pods -A --show-labels)",
			labels.FormatLabels(target.Selector), inNamespace(target.Namespace))
	}
	var services []corev1.Service
	for _, ns := range podNamespaces(pods.Items) {
		var list corev1.ServiceList
		if err := c.Reader.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return nil, fmt.Errorf("listing Services in %s: %w", ns, err)
		}
		services = append(services, list.Items...)
	}
	w := NewGatewayWorkload(target, pods.Items, services)
	if len(w.Addresses) == 0 {
		p := pods.Items[0]
		return nil, fmt.Errorf("no Service with a port 80 selects the ingress gateway pods (such as %s/%s) with labels %s, so the CA could not reach them on port 80; expose port 80 on the gateway's Service",
			p.Namespace, p.Name, labels.FormatLabels(target.Selector))
	}
	return w, nil
}

func inNamespace(ns string) string {
	if ns == "" {
		return ""
	}
	return " in namespace " + ns
}

// NewGatewayWorkload describes the workload made of pods from the Services
// that select them.
func NewGatewayWorkload(target v1alpha1.GatewayWorkloadSelector, pods []corev1.Pod, services []corev1.Service) *GatewayWorkload {
	w := &GatewayWorkload{Target: target, servicePorts: map[uint32][]uint32{}}
	if len(pods) > 0 {
		w.Namespace = pods[0].Namespace
	}
	for _, p := range pods {
		w.PodLabels = append(w.PodLabels, p.Labels)
	}
	for _, svc := range services {
		ip := svc.Spec.ClusterIP
		selected := selectedPods(svc, pods)
		if len(selected) == 0 {
			continue
		}
		_, noTranslation := svc.Labels[disablePortTranslationLabel]
		for _, sp := range svc.Spec.Ports {
			if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
				continue
			}
			target := targetPort(sp, selected)
			if !noTranslation {
				w.servicePorts[uint32(sp.Port)] = appendNew(w.servicePorts[uint32(sp.Port)], target)
			}
			switch sp.Port {
			case httpPort:
				w.HTTPPorts = appendNew(w.HTTPPorts, target)
				if ip != "" && ip != corev1.ClusterIPNone {
					w.Addresses = append(w.Addresses, net.JoinHostPort(ip, "80"))
				}
			case httpsPort:
				w.HTTPSPorts = appendNew(w.HTTPSPorts, target)
			}
		}
	}
	slices.Sort(w.Addresses)
	w.Addresses = slices.Compact(w.Addresses)
	return w
}

// disablePortTranslationLabel on a gateway Service makes Istio bind Gateway
// servers to their port numbers as written.
const disablePortTranslationLabel = "experimental.istio.io/disable-gateway-port-translation"

func selectedPods(svc corev1.Service, pods []corev1.Pod) []corev1.Pod {
	if len(svc.Spec.Selector) == 0 {
		return nil
	}
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	var out []corev1.Pod
	for _, p := range pods {
		if p.Namespace == svc.Namespace && sel.Matches(labels.Set(p.Labels)) {
			out = append(out, p)
		}
	}
	return out
}

// targetPort is the pod port behind a Service port; a named target port is
// looked up in the pods' containers.
func targetPort(sp corev1.ServicePort, pods []corev1.Pod) uint32 {
	switch {
	case sp.TargetPort.Type == intstr.String:
		for _, p := range pods {
			for _, c := range p.Spec.Containers {
				for _, cp := range c.Ports {
					if cp.Name == sp.TargetPort.StrVal {
						return uint32(cp.ContainerPort)
					}
				}
			}
		}
		return uint32(sp.Port)
	case sp.TargetPort.IntVal != 0:
		return uint32(sp.TargetPort.IntVal)
	default:
		return uint32(sp.Port)
	}
}

func appendNew(ports []uint32, p uint32) []uint32 {
	if slices.Contains(ports, p) {
		return ports
	}
	return append(ports, p)
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
func (c *IngressGateways) CheckThroughDNS(ctx context.Context, host, token, key string) ([]string, error) {
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
			return fmt.Errorf("GET %s %s failed: %v", url, where, err)
		}
		body, err := io.ReadAll(io.LimitReader(res.Body, int64(len(key))+maxBodyPreview))
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
