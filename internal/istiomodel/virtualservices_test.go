package istiomodel

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/istio-acme/istio-acme-issuer/internal/istiotest"
)

// An index extended with more VirtualServices lists, for every Gateway, the
// same VirtualServices in the same order as one built from all of them,
// delegates merged, and the index it extends is left as it was.
func TestVirtualServiceIndexExtendedMatchesRebuilt(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	namespaces := []string{"istio-system", "apps", "team"}
	exports := [][]string{nil, {"."}, {"*"}, {"~"}, {"istio-system"}, {"apps"}}
	gateways := []string{"istio-system/shared", "apps/edge", "team/gw"}
	vs := func(i int, delegate bool) *istionet.VirtualService {
		ns := namespaces[rng.IntN(len(namespaces))]
		v := istiotest.VirtualService(ns, fmt.Sprintf("v%d", i), rng.IntN(5), nil, nil)
		v.Spec.ExportTo = exports[rng.IntN(len(exports))]
		if delegate {
			v.Spec.Http = []*istioapi.HTTPRoute{istiotest.Route("sub", istiotest.Prefix("/sub"))}
			return v
		}
		v.Spec.Hosts = []string{fmt.Sprintf("h%d.example.com", rng.IntN(3))}
		for _, g := range gateways {
			if rng.IntN(2) == 0 {
				v.Spec.Gateways = append(v.Spec.Gateways, g)
			}
		}
		v.Spec.Http = []*istioapi.HTTPRoute{istiotest.Route("r", istiotest.Prefix("/"))}
		if rng.IntN(4) == 0 {
			v.Spec.Http = append(v.Spec.Http, &istioapi.HTTPRoute{Delegate: &istioapi.Delegate{Name: fmt.Sprintf("v%d", rng.IntN(40)), Namespace: ns}})
		}
		return v
	}
	names := func(list []*istionet.VirtualService) []string {
		var out []string
		for _, v := range list {
			out = append(out, fmt.Sprintf("%s/%s%d", v.Namespace, v.Name, len(v.Spec.Http)))
		}
		return out
	}
	for round := range 500 {
		var users, more []*istionet.VirtualService
		for i := range rng.IntN(30) {
			users = append(users, vs(i, rng.IntN(5) == 0))
		}
		for i := range 1 + rng.IntN(3) {
			more = append(more, vs(100+i, false))
		}
		podNamespace := namespaces[rng.IntN(len(namespaces))]
		var mesh Mesh
		if rng.IntN(3) == 0 {
			mesh.DefaultVirtualServiceExportTo = []string{"."}
		}
		base := NewIndex(users, podNamespace, mesh)
		before := map[string][]string{}
		for gw, list := range base.byGateway {
			before[gw] = names(list)
		}
		got := base.With(more)
		want := NewIndex(append(slices.Clone(users), more...), podNamespace, mesh)
		for _, gw := range gateways {
			if g, w := names(got.forGateway(gw)), names(want.forGateway(gw)); !slices.Equal(g, w) {
				t.Fatalf("round %d, Gateway %s: extended %v, rebuilt %v", round, gw, g, w)
			}
		}
		for gw, list := range base.byGateway {
			if !slices.Equal(names(list), before[gw]) {
				t.Fatalf("round %d: extending changed the index it extends for %s", round, gw)
			}
		}
	}
}

// A VirtualService that sets no exportTo takes the mesh's default: with
// defaultVirtualServiceExportTo ["."] it binds only for gateway pods of its
// own namespace, while one exporting itself everywhere binds for all, and
// a delegate without exportTo is merged only into roots of its namespace.
func TestVirtualServiceIndexMeshDefaultExportTo(t *testing.T) {
	private := Mesh{DefaultVirtualServiceExportTo: []string{"."}}
	app := istiotest.VirtualService("apps", "app", 0, []string{"istio-system/shared"}, []string{"a.example.com"}, istiotest.Route("r", istiotest.Prefix("/")))
	public := istiotest.VirtualService("apps", "public", 1, []string{"istio-system/shared"}, []string{"b.example.com"}, istiotest.Route("r", istiotest.Prefix("/")))
	public.Spec.ExportTo = []string{"*"}
	for _, tt := range []struct {
		podNamespace string
		mesh         Mesh
		want         []string
	}{
		{"istio-system", Mesh{}, []string{"app", "public"}},
		{"istio-system", private, []string{"public"}},
		{"apps", private, []string{"app", "public"}},
	} {
		var got []string
		for _, v := range NewIndex([]*istionet.VirtualService{app, public}, tt.podNamespace, tt.mesh).forGateway("istio-system/shared") {
			got = append(got, v.Name)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("pods in %s, mesh %+v: bound %v, want %v", tt.podNamespace, tt.mesh, got, tt.want)
		}
	}

	root := istiotest.VirtualService("team", "root", 0, []string{"istio-system/shared"}, []string{"c.example.com"},
		&istioapi.HTTPRoute{Delegate: &istioapi.Delegate{Name: "sub", Namespace: "apps"}})
	root.Spec.ExportTo = []string{"*"}
	sub := istiotest.VirtualService("apps", "sub", 0, nil, nil, istiotest.Route("s", istiotest.Prefix("/s")))
	for _, tt := range []struct {
		mesh   Mesh
		routes int
	}{{Mesh{}, 1}, {private, 0}} {
		list := NewIndex([]*istionet.VirtualService{root, sub}, "istio-system", tt.mesh).forGateway("istio-system/shared")
		if len(list) != 1 || len(list[0].Spec.Http) != tt.routes {
			t.Errorf("mesh %+v: root merged with %v, want %d routes from the delegate", tt.mesh, list, tt.routes)
		}
	}
}
