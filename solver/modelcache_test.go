package solver

import (
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

func TestModelCacheKeepsTheModelOfTheSameObjectsOnly(t *testing.T) {
	gws := []*istionet.Gateway{gateway("istio-system", "shared", ingressLabels, server(80, "HTTP", nil, "*.example.com"))}
	vss := []*istionet.VirtualService{virtualService("apps", "shop", 0, []string{"istio-system/shared"}, []string{"shop.example.com"}, route("app", prefix("/")))}
	c := &ModelCache{}
	first, _ := c.before(gws, vss, defaultWorkload())
	if again, _ := c.before(slices.Clone(gws), slices.Clone(vss), defaultWorkload()); again != first {
		t.Error("the same objects, listed again for a workload rediscovered the same, were modelled again")
	}

	// An updated object is a new one in the cache's lists.
	updated := vss[0].DeepCopy()
	updated.Spec.Hosts = []string{"other.example.com"}
	changed, _ := c.before(gws, []*istionet.VirtualService{updated}, defaultWorkload())
	if changed == first {
		t.Fatal("an updated VirtualService got the model of the old one")
	}
	if changed.http[8080].vhosts["other.example.com"] == nil || changed.http[8080].vhosts["shop.example.com"] != nil {
		t.Errorf("the model after the update has virtual hosts %v, want other.example.com instead of shop.example.com", slices.Sorted(mapKeys(changed.http[8080].vhosts)))
	}

	moreGateways := append(slices.Clone(gws), gateway("apps", "edge", ingressLabels, server(80, "HTTP", nil, "edge.example.com")))
	if m, _ := c.before(moreGateways, []*istionet.VirtualService{updated}, defaultWorkload()); m == changed {
		t.Error("a new Gateway got the model without it")
	}

	moved := defaultWorkload()
	moved.servicePorts = map[uint32][]uint32{80: {8081}, 443: {8443}}
	moved.HTTPPorts = []uint32{8081}
	if m, _ := c.before(moreGateways, []*istionet.VirtualService{updated}, moved); m.http[8081] == nil {
		t.Error("a workload whose Service now targets port 8081 got the model of port 8080")
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Plans made at once from one cache equal plans made each from scratch
// (run with -race: models are shared between plans and must not change).
func TestPlansSharingModelsEqualPlansFromScratch(t *testing.T) {
	gws := []*istionet.Gateway{gateway("istio-system", "shared", ingressLabels, server(80, "HTTP", nil, "*.example.com"))}
	for i := range 30 {
		hosts := []string{fmt.Sprintf("*.team%d.example.com", i)}
		gws = append(gws, gateway(fmt.Sprintf("team%d", i), "edge", ingressLabels,
			server(443, "HTTPS", &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_SIMPLE, CredentialName: "cert"}, hosts...),
			server(80, "HTTP", &istioapi.ServerTLSSettings{HttpsRedirect: true}, hosts...)))
	}
	var vss []*istionet.VirtualService
	for i := range 60 {
		vss = append(vss, virtualService(fmt.Sprintf("team%d", i%30), fmt.Sprintf("v%d", i), i, []string{fmt.Sprintf("team%d/edge", i%30)},
			[]string{fmt.Sprintf("app%d.team%d.example.com", i, i%30)}, route("app", prefix("/"))))
	}
	hosts := []string{"shop.example.com", "app3.team3.example.com", "new.team7.example.com", "x.example.org"}
	input := func(host string, models *ModelCache) PlanInput {
		return PlanInput{
			Challenge: &v1alpha1.ACMEChallenge{
				ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "req"},
				Spec: v1alpha1.ACMEChallengeSpec{DNSName: host, Token: "tok", Solver: v1alpha1.IstioHTTP01Solver{
					Gateways:         []v1alpha1.GatewayWorkloadSelector{{Selector: ingressLabels}},
					GatewayNamespace: "istio-system",
					TokenService:     v1alpha1.TokenServiceReference{Name: "istio-acme-issuer", Namespace: "istio-acme-issuer", Port: 8089},
				}},
			},
			Gateways: gws, VirtualServices: vss, Workloads: []*GatewayWorkload{defaultWorkload()},
			Credential: func(ns, name string) CredentialState { return CredentialState{Usable: true} },
			Now:        epoch.Add(time.Hour),
			Models:     models,
		}
	}
	type outcome struct {
		Plan    *Plan
		Refusal *Refusal
	}
	want := map[string]outcome{}
	for _, h := range hosts {
		p, r := PlanRoutes(input(h, nil))
		want[h] = outcome{p, r}
	}
	shared := &ModelCache{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for range 4 {
		for _, h := range hosts {
			wg.Go(func() {
				p, r := PlanRoutes(input(h, shared))
				if got := (outcome{p, r}); !reflect.DeepEqual(got, want[h]) {
					mu.Lock()
					defer mu.Unlock()
					t.Errorf("%s: planned with shared models %+v, from scratch %+v", h, got, want[h])
				}
			})
		}
	}
	wg.Wait()
}
