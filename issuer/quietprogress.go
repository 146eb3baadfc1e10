package issuer

import (
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/istio-acme/istio-acme-issuer/internal/kubeutil"
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
// reports and since when; a request that stops reporting progress without
// a final status going through here (deleted, or signed by another
// replica) is forgotten after an hour.
type progressMemo struct {
	seen kubeutil.TimedMap[types.NamespacedName, string]
	// wake, when set, receives a request whose new message was held back,
	// once it would have lasted: a request waiting for something else (a
	// grant, a Gateway) may have no pass of its own coming before then.
	wake chan event.GenericEvent
}

// newProgressMemo returns a memo whose held-back requests are sent on its
// wake channel.
func newProgressMemo() *progressMemo {
	return &progressMemo{
		seen: kubeutil.TimedMap[types.NamespacedName, string]{TTL: time.Hour},
		wake: make(chan event.GenericEvent, 1024),
	}
}

// lasted reports whether message has been the request's progress for
// quietProgress; a new message is remembered from now.
func (p *progressMemo) lasted(key types.NamespacedName, message string, now time.Time) bool {
	if seen, since, ok := p.seen.Get(key); ok && seen == message {
		return now.Sub(since) >= quietProgress
	}
	p.seen.Set(key, message, now)
	p.wakeLater(key)
	return false
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
	p.seen.Delete(key)
}

// pendingProgress returns the Ready message of applied, an apply of a
// CertificateRequest's status, when the apply says nothing but that the
// request is pending.
func pendingProgress(applied *cmapi.CertificateRequest) (string, bool) {
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
