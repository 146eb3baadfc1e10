package issuer

import (
	"encoding/json"
	"sync"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

// quietProgress is how long a request's progress message must stay the same
// before it is written. An issuance passes through several steps (routes
// published, the CA validating, the CA issuing) within a second or two;
// writing each would cost the API server a status write per step and
// Certificate, for messages nobody reads before the next one. A step that
// lasts, which is when somebody looks, is written once it has lasted this
// long.
const quietProgress = 2 * time.Second

// progressMemo remembers, per request, the progress message the signer
// reports and since when.
type progressMemo struct {
	mu     sync.Mutex
	m      map[types.NamespacedName]progressSeen
	pruned time.Time
	// wake, when set, receives a request whose new message was held back,
	// once it would have lasted: a request waiting for something else (a
	// grant, a Gateway) may have no pass of its own coming before then.
	wake chan event.GenericEvent
}

// newProgressMemo returns a memo whose held-back requests are sent on its
// wake channel.
func newProgressMemo() *progressMemo {
	return &progressMemo{wake: make(chan event.GenericEvent, 1024)}
}

type progressSeen struct {
	message string
	since   time.Time
}

// lasted reports whether message has been the request's progress for
// quietProgress; a new message is remembered from now.
func (p *progressMemo) lasted(key types.NamespacedName, message string, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[types.NamespacedName]progressSeen{}
	}
	seen, ok := p.m[key]
	if !ok || seen.message != message {
		p.m[key] = progressSeen{message: message, since: now}
		p.prune(now)
		p.wakeLater(key)
		return false
	}
	return now.Sub(seen.since) >= quietProgress
}

// wakeLater sends the request on the wake channel once quietProgress has
// passed. A full channel drops it: the request's own poll comes anyway,
// later.
func (p *progressMemo) wakeLater(key types.NamespacedName) {
	if p.wake == nil {
		return
	}
	time.AfterFunc(quietProgress, func() {
		obj := &cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
		select {
		case p.wake <- event.GenericEvent{Object: obj}:
		default:
		}
	})
}

// forget drops what is remembered of a request whose status is no longer
// only progress.
func (p *progressMemo) forget(key types.NamespacedName) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, key)
}

// prune drops, at most once a minute, the messages of requests that
// stopped reporting progress without a final status going through here
// (deleted, or signed by another replica).
func (p *progressMemo) prune(now time.Time) {
	if now.Sub(p.pruned) < time.Minute {
		return
	}
	p.pruned = now
	for k, seen := range p.m {
		if now.Sub(seen.since) > time.Hour {
			delete(p.m, k)
		}
	}
}

// pendingProgress returns the Ready message of data, an apply of a
// CertificateRequest's status, when the apply says nothing but that the
// request is pending.
func pendingProgress(data []byte) (string, bool) {
	var applied cmapi.CertificateRequest
	if err := json.Unmarshal(data, &applied); err != nil {
		return "", false
	}
	st := applied.Status
	if len(st.Certificate) > 0 || len(st.CA) > 0 || st.FailureTime != nil || len(st.Conditions) != 1 {
		return "", false
	}
	c := st.Conditions[0]
	if c.Type != cmapi.CertificateRequestConditionReady || c.Reason != cmapi.CertificateRequestReasonPending {
		return "", false
	}
	return c.Message, true
}
