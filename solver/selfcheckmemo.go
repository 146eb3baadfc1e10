package solver

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// passMemo remembers, per challenge, a self-check that passed but whose
// result could not be recorded yet (the API server refused or was down):
// the retry writes the status again without fetching the token through
// every gateway again. A pass is reused only for the same plan and for a
// short while; Istio could have changed the routing since.
type passMemo struct {
	mu     sync.Mutex
	passes map[types.UID]pass
}

type pass struct {
	plan, result string
	at           time.Time
}

// passMemoTTL is how long a passed self-check stands in for a new one.
const passMemoTTL = 15 * time.Second

// recent returns the result of a pass for this plan less than passMemoTTL
// old.
func (m *passMemo) recent(uid types.UID, plan string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.passes[uid]
	if !ok || p.plan != plan || time.Since(p.at) > passMemoTTL {
		return "", false
	}
	return p.result, true
}

// remember records a pass, and drops the ones too old to be reused.
func (m *passMemo) remember(uid types.UID, plan, result string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.passes == nil {
		m.passes = map[types.UID]pass{}
	}
	for k, p := range m.passes {
		if time.Since(p.at) > passMemoTTL {
			delete(m.passes, k)
		}
	}
	m.passes[uid] = pass{plan: plan, result: result, at: time.Now()}
}

// forget drops the challenge's pass once it is recorded.
func (m *passMemo) forget(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.passes, uid)
}
