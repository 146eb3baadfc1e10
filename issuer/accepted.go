package issuer

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// acceptedChallenges remembers when the CA was asked to validate each
// challenge. A validation the CA finishes within quietValidation, which is
// nearly all of them, then costs no status write on the challenge: the
// challenge records its state only once a validation lasts (or when the CA
// gives its verdict on one name of an order still waiting for another).
// A restart forgets; the next pass asks the CA again, which an accepted
// challenge tolerates (accept reads its state when the CA refuses).
type acceptedChallenges struct {
	mu     sync.Mutex
	m      map[types.UID]time.Time
	pruned time.Time
}

// forgetAfter bounds how long an acceptance is remembered: longer than any
// CA keeps an authorization pending (Let's Encrypt: 1 hour), so entries of
// challenges deleted without passing through deleteChallenges do not pile
// up.
const forgetAfter = 2 * time.Hour

func (a *acceptedChallenges) remember(uid types.UID, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = map[types.UID]time.Time{}
	}
	a.m[uid] = at
	if at.Sub(a.pruned) > time.Minute {
		a.pruned = at
		for k, t := range a.m {
			if at.Sub(t) > forgetAfter {
				delete(a.m, k)
			}
		}
	}
}

// at returns when the challenge with uid was accepted, if remembered.
func (a *acceptedChallenges) at(uid types.UID) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.m[uid]
	return t, ok
}

func (a *acceptedChallenges) forget(uid types.UID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.m, uid)
}
