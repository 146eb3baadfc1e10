package solver

import (
	"fmt"
	"testing"
	"time"

	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/istiomodel"
)

// BenchmarkPlanRoutesOnCrowdedGateway plans one challenge on the layout of
// the bench's memory case: the shared *.example.com Gateway, 2,000 other
// teams' Gateways (a quarter on the same ingress gateway, each HTTPS with
// a redirecting port 80) and 5,000 VirtualServices bound to them.
func BenchmarkPlanRoutesOnCrowdedGateway(b *testing.B) {
	gws := []*istionet.Gateway{gateway("istio-system", "shared", ingressLabels, server(80, "HTTP", nil, "*.example.com"))}
	for i := range 2000 {
		selector := map[string]string{"istio": fmt.Sprintf("other-%d", i%20)}
		if i%4 == 0 {
			selector = ingressLabels
		}
		hosts := []string{fmt.Sprintf("*.g%d.example.net", i)}
		gws = append(gws, gateway(fmt.Sprintf("team%d", i%10), fmt.Sprintf("g%d", i), selector,
			server(443, "HTTPS", &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_SIMPLE, CredentialName: fmt.Sprintf("secret%d", i)}, hosts...),
			server(80, "HTTP", &istioapi.ServerTLSSettings{HttpsRedirect: true}, hosts...)))
	}
	var vss []*istionet.VirtualService
	for i := range 5000 {
		g := i % 2000
		vss = append(vss, virtualService(fmt.Sprintf("team%d", i%10), fmt.Sprintf("v%d", i), i,
			[]string{fmt.Sprintf("team%d/g%d", g%10, g)}, []string{fmt.Sprintf("v%d.g%d.example.net", i, g)}, route("app", prefix("/"))))
	}
	in := PlanInput{
		Gateways: gws, VirtualServices: vss, Workloads: []*GatewayWorkload{defaultWorkload()},
		Credential: func(ns, name string) CredentialState { return CredentialState{Usable: true} },
		Now:        epoch.Add(time.Hour),
	}
	b.Run("models built per plan", func(b *testing.B) { planCrowded(b, in) })
	in.Models = &istiomodel.Cache{}
	b.Run("models kept between plans", func(b *testing.B) { planCrowded(b, in) })
}

func planCrowded(b *testing.B, in PlanInput) {
	b.ReportAllocs()
	for i := range b.N {
		in.Challenge = &v1alpha1.ACMEChallenge{
			ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: fmt.Sprintf("req-%d", i)},
			Spec: v1alpha1.ACMEChallengeSpec{DNSName: fmt.Sprintf("shop%d.example.com", i), Token: "tok", Solver: v1alpha1.IstioHTTP01Solver{
				Gateways:         []v1alpha1.GatewayWorkloadSelector{{Selector: ingressLabels}},
				GatewayNamespace: "istio-system",
				TokenService:     v1alpha1.TokenServiceReference{Name: "istio-acme-issuer", Namespace: "istio-acme-issuer", Port: 8089},
			}},
		}
		if _, refusal := PlanRoutes(in); refusal != nil {
			b.Fatalf("refused: %s", refusal.Message)
		}
	}
}
