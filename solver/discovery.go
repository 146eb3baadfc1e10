package solver

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

// +kubebuilder:rbac:groups="",resources=pods;services,verbs=get;list

const (
	// discoveryTTL is how long a discovered gateway workload is reused, and
	// discoveryErrorTTL how long a failed discovery is.
	discoveryTTL      = 30 * time.Second
	discoveryErrorTTL = 2 * time.Second
)

// GatewayDiscovery finds the ingress gateway workload an issuer's entry
// names: its pods, the Services in front of them and the ports the CA's
// requests reach. A discovery is reused for discoveryTTL (a failed one for
// discoveryErrorTTL).
type GatewayDiscovery struct {
	// Reader lists Pods and Services, normally uncached: gateways are looked
	// up rarely and a cache of every Pod would cost memory.
	Reader client.Reader
	// Mesh is istiod's settings that change what the pods get; nil is
	// istiod's defaults.
	Mesh *MeshSettings

	mu    sync.Mutex
	found map[string]discovery // by selector
}

type discovery struct {
	workload *GatewayWorkload
	err      error
	at       time.Time
}

// Workload finds the gateway pods that target names and the Services in
// front of them (their cluster IPs and port mappings).
func (c *GatewayDiscovery) Workload(ctx context.Context, target v1alpha1.GatewayWorkloadSelector) (*GatewayWorkload, error) {
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

func (c *GatewayDiscovery) discover(ctx context.Context, target v1alpha1.GatewayWorkloadSelector) (*GatewayWorkload, error) {
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
	mesh, err := c.Mesh.Mesh(ctx)
	if err != nil {
		return nil, err
	}
	w.Mesh = mesh
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

func podNamespaces(pods []corev1.Pod) []string {
	set := map[string]bool{}
	for _, p := range pods {
		set[p.Namespace] = true
	}
	return slices.Sorted(maps.Keys(set))
}
