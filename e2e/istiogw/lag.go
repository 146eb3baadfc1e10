package istiogw

import (
	"context"
	"fmt"
	"sync"
	"time"

	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// SetLag makes the gateway route with the Gateways, VirtualServices and
// Services as they were d ago, as a gateway does while istiod is slow to
// push (a busy control plane, a reconnecting proxy). Zero routes with the
// newest configuration again. The gateway records the configuration every
// 100 ms from the first call until the test ends.
func (g *Gateway) SetLag(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lag = d
	if g.history != nil || d == 0 {
		return
	}
	g.history = &configHistory{base: g.Reader, keep: time.Minute}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.history.record(ctx, 100*time.Millisecond)
	}()
	g.t.Cleanup(func() {
		cancel()
		<-done
	})
}

// configSnapshot is the routing configuration at one moment.
type configSnapshot struct {
	at   time.Time
	gws  istionet.GatewayList
	vss  istionet.VirtualServiceList
	svcs corev1.ServiceList
}

// configHistory keeps snapshots of the routing configuration, to route with
// one from the past.
type configHistory struct {
	base client.Reader
	keep time.Duration

	mu    sync.Mutex
	snaps []*configSnapshot
}

func (h *configHistory) record(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		s := &configSnapshot{at: time.Now()}
		if h.base.List(ctx, &s.gws) == nil && h.base.List(ctx, &s.vss) == nil && h.base.List(ctx, &s.svcs) == nil {
			h.mu.Lock()
			h.snaps = append(h.snaps, s)
			for len(h.snaps) > 1 && time.Since(h.snaps[1].at) > h.keep {
				h.snaps = h.snaps[1:]
			}
			h.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// asOf returns a reader of the newest snapshot taken at or before t (the
// oldest one when none is that old).
func (h *configHistory) asOf(t time.Time) client.Reader {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.snaps) == 0 {
		return h.base
	}
	pick := h.snaps[0]
	for _, s := range h.snaps {
		if s.at.After(t) {
			break
		}
		pick = s
	}
	return snapshotReader{s: pick}
}

// snapshotReader lists one snapshot's objects.
type snapshotReader struct {
	s *configSnapshot
}

func (r snapshotReader) Get(context.Context, client.ObjectKey, client.Object, ...client.GetOption) error {
	return fmt.Errorf("istio gateway: a configuration snapshot is only listed")
}

func (r snapshotReader) List(_ context.Context, list client.ObjectList, _ ...client.ListOption) error {
	switch l := list.(type) {
	case *istionet.GatewayList:
		r.s.gws.DeepCopyInto(l)
	case *istionet.VirtualServiceList:
		r.s.vss.DeepCopyInto(l)
	case *corev1.ServiceList:
		r.s.svcs.DeepCopyInto(l)
	default:
		return fmt.Errorf("istio gateway: a configuration snapshot holds no %T", list)
	}
	return nil
}
