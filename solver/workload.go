package solver

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/istiomodel"
)

// +kubebuilder:rbac:groups="",resources=pods;services,verbs=get;list

const (
	// discoveryTTL is how long a discovered gateway workload is reused, and
	// discoveryErrorTTL how long a failed discovery is.
	discoveryTTL      = 30 * time.Second
	discoveryErrorTTL = 2 * time.Second
)

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
	// Workload is what the Istio model reads: the pods' namespace (where
	// Istio reads credentialName), their labels and the Services' port
	// mappings.
	istiomodel.Workload
	// Target is the issuer's entry that names this workload.
	Target v1alpha1.GatewayWorkloadSelector
	// Addresses are "clusterIP:80" of the Services in front of the pods.
	Addresses []string
	// HTTPPorts and HTTPSPorts are the pod ports behind the Services' ports
	// 80 and 443, where the CA's requests (and its redirects to HTTPS)
	// arrive.
	HTTPPorts, HTTPSPorts []uint32
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
	w := &GatewayWorkload{Target: target, Workload: istiomodel.Workload{ServicePorts: map[uint32][]uint32{}}}
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
				w.ServicePorts[uint32(sp.Port)] = appendNew(w.ServicePorts[uint32(sp.Port)], target)
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
