package istiomodel

import (
	"reflect"
	"sync"

	istionet "istio.io/client-go/pkg/apis/networking/v1"
)

// Cache keeps, per gateway workload, the model of the users' Gateways and
// VirtualServices from the last plan, and gives it to the next plan when
// the workload and the objects are the same ones: on a cluster whose
// Gateways change less often than challenges come, most plans then model
// only the candidates. The callers' lists hand out the same object for an
// unchanged Gateway or VirtualService and a new one for a changed one, so
// the same set of objects is the same configuration. Models are never
// changed once built; plans share them. The zero value is ready to use.
type Cache struct {
	mu      sync.Mutex
	entries map[string]*cachedModel // by the caller's key for the workload
}

type cachedModel struct {
	workload Workload
	gateways map[*istionet.Gateway]bool
	vss      map[*istionet.VirtualService]bool
	model    *Proxy
	index    *Index
}

// Model returns the model of the objects on the workload and the index of
// their VirtualServices, built now or kept from an earlier call with the
// same key. A nil cache builds them and keeps nothing.
func (c *Cache) Model(key string, gws []*istionet.Gateway, vss []*istionet.VirtualService, w *Workload) (*Proxy, *Index) {
	if e := c.entry(key); e != nil && e.matches(gws, vss, w) {
		return e.model, e.index
	}
	idx := NewIndex(vss, w.Namespace, w.Mesh)
	model := Build(Input{Gateways: gws, VirtualServices: idx, Workload: w})
	if c == nil {
		return model, idx
	}
	e := &cachedModel{
		workload: *w,
		gateways: make(map[*istionet.Gateway]bool, len(gws)),
		vss:      make(map[*istionet.VirtualService]bool, len(vss)),
		model:    model,
		index:    idx,
	}
	for _, g := range gws {
		e.gateways[g] = true
	}
	for _, v := range vss {
		e.vss[v] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]*cachedModel{}
	}
	c.entries[key] = e
	return model, idx
}

func (c *Cache) entry(key string) *cachedModel {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries[key]
}

// matches reports whether the entry was built from exactly these objects
// for a workload with the same pods, ports and mesh settings. The entry holds its objects,
// so none of them is freed and its address given to another.
func (e *cachedModel) matches(gws []*istionet.Gateway, vss []*istionet.VirtualService, w *Workload) bool {
	if len(gws) != len(e.gateways) || len(vss) != len(e.vss) {
		return false
	}
	if e.workload.Namespace != w.Namespace || !reflect.DeepEqual(e.workload.PodLabels, w.PodLabels) || !reflect.DeepEqual(e.workload.ServicePorts, w.ServicePorts) || !reflect.DeepEqual(e.workload.Mesh, w.Mesh) {
		return false
	}
	for _, g := range gws {
		if !e.gateways[g] {
			return false
		}
	}
	for _, v := range vss {
		if !e.vss[v] {
			return false
		}
	}
	return true
}
