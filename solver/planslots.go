package solver

import (
	"context"
	"runtime"
	"sync"
)

// planSlots bounds how many challenges are planned at once. Planning is
// CPU work on all of the cluster's Gateways and VirtualServices (listed
// from the cache, then modelled for every gateway workload): more plans at
// once than there are CPUs finish none sooner, and each one in flight
// holds its own lists and models, so on a large cluster the controller's
// memory would grow with its workers.
type planSlots struct {
	once  sync.Once
	slots chan struct{}
}

// acquire waits for a slot; release gives it back.
func (p *planSlots) acquire(ctx context.Context) (release func(), err error) {
	p.once.Do(func() { p.slots = make(chan struct{}, runtime.GOMAXPROCS(0)) })
	select {
	case p.slots <- struct{}{}:
		return func() { <-p.slots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
