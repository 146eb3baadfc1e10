package solver

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

// NamespacedIssuerPolicy is what the platform lets a namespaced ACMEIssuer's
// spec.solver.istio use: its author is a tenant, and the controller would
// otherwise create Gateways in any namespace it may write to, on any
// gateway pods, routed to any Service, with its own rights. Cluster-scoped
// issuers and IstioSolverClasses are the platform's and are not confined.
type NamespacedIssuerPolicy struct {
	// GatewayNamespaces are the gatewayNamespace values allowed.
	GatewayNamespaces []string
	// GatewaySelectors are the gateway pod selectors allowed, each exactly.
	GatewaySelectors []map[string]string
	// TokenServices are the token Services allowed.
	TokenServices []v1alpha1.TokenServiceReference
}

// Check returns why a namespaced issuer may not use the settings, naming
// the field and the controller flag (chart value) that allows more, or "".
func (p *NamespacedIssuerPolicy) Check(sol v1alpha1.IstioHTTP01Solver) string {
	if p == nil {
		return ""
	}
	var problems []string
	if !slices.Contains(p.GatewayNamespaces, sol.GatewayNamespace) {
		problems = append(problems, fmt.Sprintf("spec.solver.istio.gatewayNamespace %q is not one the platform allows namespaced issuers (%s; flag --namespaced-issuer-gateway-namespaces, chart value namespacedIssuers.gatewayNamespaces)",
			sol.GatewayNamespace, strings.Join(p.GatewayNamespaces, ", ")))
	}
	for i, g := range sol.Gateways {
		if !slices.ContainsFunc(p.GatewaySelectors, func(allowed map[string]string) bool { return maps.Equal(allowed, g.Selector) }) {
			var allowed []string
			for _, a := range p.GatewaySelectors {
				allowed = append(allowed, labels.FormatLabels(a))
			}
			problems = append(problems, fmt.Sprintf("spec.solver.istio.gateways[%d].selector %s is not one the platform allows namespaced issuers (%s; flag --namespaced-issuer-gateway-selectors, chart value namespacedIssuers.gatewaySelectors)",
				i, labels.FormatLabels(g.Selector), strings.Join(allowed, "; ")))
		}
	}
	if !slices.Contains(p.TokenServices, sol.TokenService) {
		var allowed []string
		for _, s := range p.TokenServices {
			allowed = append(allowed, fmt.Sprintf("%s/%s:%d", s.Namespace, s.Name, s.Port))
		}
		problems = append(problems, fmt.Sprintf("spec.solver.istio.tokenService %s/%s:%d is not one the platform allows namespaced issuers (%s; flag --namespaced-issuer-token-services, chart value namespacedIssuers.tokenServices)",
			sol.TokenService.Namespace, sol.TokenService.Name, sol.TokenService.Port, strings.Join(allowed, ", ")))
	}
	return strings.Join(problems, "; ")
}
