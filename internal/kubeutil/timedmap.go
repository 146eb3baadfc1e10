package kubeutil

import (
	"sync"
	"time"
)

// TimedMap is what a controller remembers of the objects it works on
// between passes (a self-check that passed, a challenge the CA was asked
// to validate, a request's progress message): a value and when it was
// stored, per key. An entry older than TTL is dropped, on a later Set, so
// that what was never forgotten (an object deleted by someone else, or
// handled by another replica) does not pile up. Safe for concurrent use;
// the zero value with a TTL is ready.
type TimedMap[K comparable, V any] struct {
	TTL time.Duration

	mu     sync.Mutex
	m      map[K]timed[V]
	pruned time.Time
}

type timed[V any] struct {
	value V
	at    time.Time
}

// Set stores value for key as of at, and at most once per TTL drops the
// entries older than TTL.
func (t *TimedMap[K, V]) Set(key K, value V, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[K]timed[V]{}
	}
	t.m[key] = timed[V]{value: value, at: at}
	if at.Sub(t.pruned) < t.TTL {
		return
	}
	t.pruned = at
	for k, e := range t.m {
		if at.Sub(e.at) > t.TTL {
			delete(t.m, k)
		}
	}
}

// Get returns the value stored for key and when it was stored.
func (t *TimedMap[K, V]) Get(key K) (value V, at time.Time, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[key]
	return e.value, e.at, ok
}

// Delete forgets key.
func (t *TimedMap[K, V]) Delete(key K) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, key)
}
