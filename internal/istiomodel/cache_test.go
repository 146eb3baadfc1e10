package istiomodel

import (
	"maps"
	"slices"
	"testing"

	istionet "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/istio-acme/istio-acme-issuer/internal/istiotest"
)

func defaultWorkload() *Workload {
	return &Workload{
		Namespace:    "istio-system",
		PodLabels:    []map[string]string{{"istio": "ingressgateway", "app": "istio-ingressgateway"}},
		ServicePorts: map[uint32][]uint32{80: {8080}, 443: {8443}},
	}
}

func TestCacheKeepsTheModelOfTheSameObjectsOnly(t *testing.T) {
	gws := []*istionet.Gateway{istiotest.Gateway("istio-system", "shared", istiotest.IngressLabels, istiotest.Server(80, "HTTP", nil, "*.example.com"))}
	vss := []*istionet.VirtualService{istiotest.VirtualService("apps", "shop", 0, []string{"istio-system/shared"}, []string{"shop.example.com"}, istiotest.Route("app", istiotest.Prefix("/")))}
	c := &Cache{}
	first, _ := c.Model("w", gws, vss, defaultWorkload())
	if again, _ := c.Model("w", slices.Clone(gws), slices.Clone(vss), defaultWorkload()); again != first {
		t.Error("the same objects, listed again for a workload rediscovered the same, were modelled again")
	}

	// An updated object is a new one in the callers' lists.
	updated := vss[0].DeepCopy()
	updated.Spec.Hosts = []string{"other.example.com"}
	changed, _ := c.Model("w", gws, []*istionet.VirtualService{updated}, defaultWorkload())
	if changed == first {
		t.Fatal("an updated VirtualService got the model of the old one")
	}
	if vh := changed.HTTP(8080).vhosts; vh["other.example.com"] == nil || vh["shop.example.com"] != nil {
		t.Errorf("the model after the update has virtual hosts %v, want other.example.com instead of shop.example.com", slices.Sorted(maps.Keys(vh)))
	}

	moreGateways := append(slices.Clone(gws), istiotest.Gateway("apps", "edge", istiotest.IngressLabels, istiotest.Server(80, "HTTP", nil, "edge.example.com")))
	if m, _ := c.Model("w", moreGateways, []*istionet.VirtualService{updated}, defaultWorkload()); m == changed {
		t.Error("a new Gateway got the model without it")
	}

	moved := defaultWorkload()
	moved.ServicePorts = map[uint32][]uint32{80: {8081}, 443: {8443}}
	if m, _ := c.Model("w", moreGateways, []*istionet.VirtualService{updated}, moved); m.HTTP(8081) == nil {
		t.Error("a workload whose Service now targets port 8081 got the model of port 8080")
	}
}
