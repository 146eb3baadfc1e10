package issuer

import (
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/istio-acme/istio-acme-issuer/internal/kubeutil"
)

// acceptedChallenges remembers when the CA was asked to validate each
// challenge. A validation the CA finishes within validatingShown, which is
// nearly all of them, then costs no status write on the challenge: the
// challenge records its state only once a validation lasts (or when the CA
// gives its verdict on one name of an order still waiting for another).
// A restart forgets; the next pass asks the CA again, which an accepted
// challenge tolerates (accept reads its state when the CA refuses).
//
// An acceptance is remembered for longer than any CA keeps an
// authorization pending (Let's Encrypt: 1 hour), so that those of
// challenges deleted without passing through deleteChallenges do not pile
// up.
func newAcceptedChallenges() *kubeutil.TimedMap[types.UID, struct{}] {
	return &kubeutil.TimedMap[types.UID, struct{}]{TTL: 2 * time.Hour}
}
