package solver

import (
	"strings"
	"testing"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

func TestNamespacedIssuerPolicy(t *testing.T) {
	p := &NamespacedIssuerPolicy{
		GatewayNamespaces: []string{"istio-system"},
		GatewaySelectors:  []map[string]string{{"istio": "ingressgateway"}},
		TokenServices:     []v1alpha1.TokenServiceReference{{Namespace: "istio-acme-issuer", Name: "istio-acme-issuer", Port: 8089}},
	}
	ok := v1alpha1.DefaultIstioHTTP01Solver()
	if why := p.Check(ok); why != "" {
		t.Fatalf("the defaults are refused: %s", why)
	}
	for name, tc := range map[string]struct {
		mutate func(*v1alpha1.IstioHTTP01Solver)
		want   string
	}{
		"another team's namespace": {func(s *v1alpha1.IstioHTTP01Solver) { s.GatewayNamespace = "team-b" }, `gatewayNamespace "team-b"`},
		"another team's gateway":   {func(s *v1alpha1.IstioHTTP01Solver) { s.Gateways[0].Selector = map[string]string{"app": "team-b-gw"} }, "gateways[0].selector app=team-b-gw"},
		"a wider selector": {func(s *v1alpha1.IstioHTTP01Solver) {
			s.Gateways[0].Selector = map[string]string{"istio": "ingressgateway", "x": "y"}
		}, "gateways[0].selector"},
		"any Service as token service": {func(s *v1alpha1.IstioHTTP01Solver) {
			s.TokenService = v1alpha1.TokenServiceReference{Namespace: "team-b", Name: "db", Port: 5432}
		}, "tokenService team-b/db:5432"},
	} {
		t.Run(name, func(t *testing.T) {
			sol := v1alpha1.DefaultIstioHTTP01Solver()
			tc.mutate(&sol)
			why := p.Check(sol)
			if !strings.Contains(why, tc.want) || !strings.Contains(why, "namespacedIssuers.") {
				t.Errorf("refusal %q, want it to name %q and the chart value", why, tc.want)
			}
		})
	}
	if why := (*NamespacedIssuerPolicy)(nil).Check(v1alpha1.IstioHTTP01Solver{GatewayNamespace: "anything"}); why != "" {
		t.Errorf("no policy refuses: %s", why)
	}
}
