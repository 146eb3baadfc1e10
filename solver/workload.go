package solver

import (
	"net"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/istiomodel"
)

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
	// Addresses are "clusterIP:80" of the Services the CA arrives through
	// (those of type LoadBalancer or NodePort when there are any, else
	// all in front of the pods).
	Addresses []string
	// HTTPPorts and HTTPSPorts are the pod ports behind those Services'
	// ports 80 and 443, where the CA's requests (and its redirects to
	// HTTPS) arrive.
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
	// istiod orders a gateway's Services by creation time, then hostname,
	// and binds a Gateway server's port to the target port of the first
	// Service with that port (label-selected Gateways): a second Service
	// mapping port 80 elsewhere adds no listener.
	services = slices.Clone(services)
	slices.SortStableFunc(services, func(a, b corev1.Service) int {
		if c := a.CreationTimestamp.Time.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name+"."+a.Namespace+".svc", b.Name+"."+b.Namespace+".svc")
	})
	// Where a Service exposes the pods outside the cluster (LoadBalancer,
	// NodePort), the CA arrives through those only; the others are
	// internal. Without one, any Service may be the way in.
	exposed := slices.ContainsFunc(services, func(svc corev1.Service) bool {
		return isExposed(svc) && len(selectedPods(svc, pods)) > 0
	})
	bound := map[string]bool{}
	for _, svc := range services {
		ip := svc.Spec.ClusterIP
		selected := selectedPods(svc, pods)
		if len(selected) == 0 {
			continue
		}
		caPath := !exposed || isExposed(svc)
		_, noTranslation := svc.Labels[disablePortTranslationLabel]
		for _, sp := range svc.Spec.Ports {
			if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
				continue
			}
			target := targetPort(sp, selected)
			// Pods of one namespace share their Services; pods of
			// another have their own first Service.
			key := svc.Namespace + "/" + strconv.Itoa(int(sp.Port))
			if !noTranslation && !bound[key] {
				bound[key] = true
				w.ServicePorts[uint32(sp.Port)] = appendNew(w.ServicePorts[uint32(sp.Port)], target)
			}
			switch {
			case !caPath:
			case sp.Port == httpPort:
				w.HTTPPorts = appendNew(w.HTTPPorts, target)
				if ip != "" && ip != corev1.ClusterIPNone {
					w.Addresses = append(w.Addresses, net.JoinHostPort(ip, "80"))
				}
			case sp.Port == httpsPort:
				w.HTTPSPorts = appendNew(w.HTTPSPorts, target)
			}
		}
	}
	slices.Sort(w.Addresses)
	w.Addresses = slices.Compact(w.Addresses)
	return w
}

// isExposed reports whether the Service reaches the pods from outside the
// cluster.
func isExposed(svc corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer || svc.Spec.Type == corev1.ServiceTypeNodePort
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
