package solver

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/istio-acme/istio-acme-issuer/internal/kubeutil"
)

// passMemo remembers, per challenge, a self-check that passed but whose
// result could not be recorded yet (the API server refused or was down):
// the retry writes the status again without fetching the token through
// every gateway again. A pass is reused only for the same plan and for a
// short while; Istio could have changed the routing since.
type passMemo struct {
	once   sync.Once
	passes kubeutil.TimedMap[types.UID, pass]
}

// memo returns the passes, dropping those older than passMemoTTL.
func (m *passMemo) memo() *kubeutil.TimedMap[types.UID, pass] {
	m.once.Do(func() { m.passes.TTL = passMemoTTL })
	return &m.passes
}

type pass struct {
	plan, result string
}

// passMemoTTL is how long a passed self-check stands in for a new one.
const passMemoTTL = 15 * time.Second

// recent returns the result of a pass for this plan less than passMemoTTL
// old.
func (m *passMemo) recent(uid types.UID, plan string) (string, bool) {
	p, at, ok := m.memo().Get(uid)
	if !ok || p.plan != plan || time.Since(at) > passMemoTTL {
		return "", false
	}
	return p.result, true
}

// remember records a pass; the ones too old to be reused are dropped.
func (m *passMemo) remember(uid types.UID, plan, result string) {
	m.memo().Set(uid, pass{plan: plan, result: result}, time.Now())
}

// forget drops the challenge's pass once it is recorded.
func (m *passMemo) forget(uid types.UID) {
	m.memo().Delete(uid)
}
