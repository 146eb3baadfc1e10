package istiomodel

import (
	"maps"
	"slices"
	"strings"

	istionet "istio.io/client-go/pkg/apis/networking/v1"
)

// Index lists the VirtualServices bound to each Gateway that the
// workload's pods see, in istiod's order, with delegates merged.
type Index struct {
	byGateway map[string][]*istionet.VirtualService
	// parts are byGateway's lists before they are joined: the pods' own
	// namespace's private ones, those exported to it, the public ones.
	parts        map[string]*[3][]*istionet.VirtualService
	delegates    map[string]*istionet.VirtualService
	podNamespace string
	mesh         Mesh
}

const (
	vsPrivate = iota
	vsExported
	vsPublic
)

// NewIndex indexes VirtualServices for gateway pods in podNamespace, with
// the mesh's default exportTo.
func NewIndex(vss []*istionet.VirtualService, podNamespace string, mesh Mesh) *Index {
	sorted := slices.Clone(vss)
	slices.SortStableFunc(sorted, compareVirtualServices)
	idx := &Index{
		byGateway:    map[string][]*istionet.VirtualService{},
		parts:        map[string]*[3][]*istionet.VirtualService{},
		delegates:    map[string]*istionet.VirtualService{},
		podNamespace: podNamespace,
		mesh:         mesh,
	}
	for _, vs := range sorted {
		if len(vs.Spec.Hosts) == 0 {
			idx.delegates[vs.Namespace+"/"+vs.Name] = vs
		}
	}
	for _, vs := range sorted {
		idx.place(vs, func(gw string, part int, merged *istionet.VirtualService) {
			p := idx.parts[gw]
			if p == nil {
				p = &[3][]*istionet.VirtualService{}
				idx.parts[gw] = p
			}
			p[part] = append(p[part], merged)
		})
	}
	for gw := range idx.parts {
		idx.join(gw)
	}
	return idx
}

func compareVirtualServices(a, b *istionet.VirtualService) int {
	return compareCreation(a.CreationTimestamp.Time, b.CreationTimestamp.Time, a.Name, b.Name, a.Namespace, b.Namespace)
}

// place calls add with a VirtualService that has hosts, its delegates
// merged, for each Gateway it binds where the pods see it, with the part
// of that Gateway's list it goes in.
func (idx *Index) place(vs *istionet.VirtualService, add func(gateway string, part int, merged *istionet.VirtualService)) {
	if len(vs.Spec.Hosts) == 0 {
		return
	}
	merged := mergeDelegates(vs, idx.delegates, idx.mesh)
	exportTo := exportSet(vs.Spec.ExportTo, vs.Namespace, idx.mesh)
	for _, ref := range vs.Spec.Gateways {
		if ref == "mesh" {
			continue
		}
		gw := resolveGatewayRef(ref, vs.Namespace)
		switch {
		case exportTo["*"]:
			add(gw, vsPublic, merged)
		case exportTo["~"]:
		default:
			if exportTo[vs.Namespace] && vs.Namespace == idx.podNamespace {
				add(gw, vsPrivate, merged)
			}
			if vs.Namespace != idx.podNamespace && exportTo[idx.podNamespace] {
				add(gw, vsExported, merged)
			}
		}
	}
}

// join sets the Gateway's list from its parts.
func (idx *Index) join(gateway string) {
	p := idx.parts[gateway]
	idx.byGateway[gateway] = slices.Concat(p[vsPrivate], p[vsExported], p[vsPublic])
}

// With returns the index with more VirtualServices, all with hosts, in
// their places: the same lists as an index built from all of them, without
// sorting and merging the others again. The receiver is not changed: a
// Gateway's parts are copied before the first insert.
func (idx *Index) With(more []*istionet.VirtualService) *Index {
	out := &Index{
		byGateway:    maps.Clone(idx.byGateway),
		parts:        maps.Clone(idx.parts),
		delegates:    idx.delegates,
		podNamespace: idx.podNamespace,
		mesh:         idx.mesh,
	}
	copied := map[string]bool{}
	for _, vs := range slices.SortedStableFunc(slices.Values(more), compareVirtualServices) {
		out.place(vs, func(gw string, part int, merged *istionet.VirtualService) {
			if !copied[gw] {
				var p [3][]*istionet.VirtualService
				if shared := idx.parts[gw]; shared != nil {
					p = *shared
				}
				out.parts[gw], copied[gw] = &p, true
			}
			p := out.parts[gw]
			at := len(p[part])
			for at > 0 && compareVirtualServices(p[part][at-1], merged) > 0 {
				at--
			}
			p[part] = slices.Insert(slices.Clip(p[part]), at, merged)
		})
	}
	for gw := range copied {
		out.join(gw)
	}
	return out
}

// forGateway lists the VirtualServices bound to a Gateway
// ("namespace/name"), in istiod's order.
func (idx *Index) forGateway(gateway string) []*istionet.VirtualService {
	return idx.byGateway[gateway]
}

// resolveGatewayRef turns a VirtualService's gateway reference into
// "namespace/name", as istiod's resolveGatewayName.
func resolveGatewayRef(ref, vsNamespace string) string {
	if ns, name, ok := strings.Cut(ref, "/"); ok {
		if ns == "." {
			return vsNamespace + "/" + name
		}
		return ns + "/" + name
	}
	name, rest, ok := strings.Cut(ref, ".")
	if !ok {
		return vsNamespace + "/" + ref
	}
	ns, _, _ := strings.Cut(rest, ".")
	return ns + "/" + name
}
