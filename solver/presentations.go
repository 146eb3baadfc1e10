package solver

import (
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/kubeutil"
)

// Presentations hand a presented challenge of one of our orders to the
// signer in memory, in the same process: the signer asks the CA to
// validate at once. The challenge's status says "presented" in the
// signer's own write once the CA's validation lasted (see MarkPresented),
// or, if the signer did not ask the CA within presentedQuiet, the
// challenge controller's. Most challenges are validated and deleted
// before either, and the presentation costs no write at all. A replica
// that takes over starts with nothing remembered and presents its
// challenges again.
type Presentations struct {
	memo kubeutil.TimedMap[types.UID, presentation]
	wake chan event.GenericEvent
	// quiet is presentedQuiet, shorter in tests.
	quiet time.Duration
}

// presentation is a passed self-check of one generation of a challenge:
// the status it is written with once it lasted.
type presentation struct {
	generation int64
	message    string
	routes     []v1alpha1.ObjectReference
	// accepted: the signer asked the CA to validate it; the signer's
	// write says it is presented if the validation lasts.
	accepted bool
	// answered: the token server answered the challenge since, and
	// woke the signer once for it.
	answered bool
}

// answeredSettle is how long after the token server answered an accepted
// challenge the signer is woken to read the order: the CA decides once
// its request is answered (all of them, where it asks from several
// places), usually within this.
const answeredSettle = 200 * time.Millisecond

// presentedQuiet is how long a presentation the signer has not taken up is
// only in memory before the challenge controller writes it: under load
// (hundreds of Certificates at once) the signer's queue may hold the
// request for seconds, and a write of what lasts less than this costs the
// API server more than anyone reads.
const presentedQuiet = 30 * time.Second

// NewPresentations returns an empty memo whose presented challenges are
// sent on Wake.
func NewPresentations() *Presentations {
	return &Presentations{
		memo:  kubeutil.TimedMap[types.UID, presentation]{TTL: time.Hour},
		wake:  make(chan event.GenericEvent, 1024),
		quiet: presentedQuiet,
	}
}

// Wake receives each challenge presented in memory, for the signer's
// request controller to wake its request.
func (p *Presentations) Wake() <-chan event.GenericEvent { return p.wake }

// Presented reports whether the challenge's current generation was
// presented, in memory or in its status.
func (p *Presentations) Presented(ch *v1alpha1.ACMEChallenge) bool {
	if ch.Status.Presented {
		return true
	}
	if p == nil {
		return false
	}
	pr, _, ok := p.memo.Get(ch.UID)
	return ok && pr.generation == ch.Generation
}

// Present remembers a passed self-check and wakes the signer; it reports
// false when it was remembered already (the wake was sent then).
func (p *Presentations) Present(ch *v1alpha1.ACMEChallenge, message string, routes []v1alpha1.ObjectReference) bool {
	if pr, _, ok := p.memo.Get(ch.UID); ok && pr.generation == ch.Generation && pr.message == message {
		return false
	}
	p.memo.Set(ch.UID, presentation{generation: ch.Generation, message: message, routes: routes}, time.Now())
	select {
	case p.wake <- event.GenericEvent{Object: ch.DeepCopy()}:
	default: // the signer polls its requests anyway
	}
	return true
}

// Accepted records that the signer asked the CA to validate the
// challenge's presentation: the challenge controller leaves its status to
// the signer from then on.
func (p *Presentations) Accepted(ch *v1alpha1.ACMEChallenge) {
	p.change(ch, func(pr *presentation) bool {
		was := pr.accepted
		pr.accepted = true
		return !was
	})
}

// change applies set to the presentation of the challenge's current
// generation, if there is one, keeping its time; it reports whether set
// changed it.
func (p *Presentations) change(ch *v1alpha1.ACMEChallenge, set func(*presentation) bool) bool {
	if p == nil {
		return false
	}
	pr, at, ok := p.memo.Get(ch.UID)
	if !ok || pr.generation != ch.Generation || !set(&pr) {
		return false
	}
	p.memo.Set(ch.UID, pr, at)
	return true
}

// Answered is called by the token server for each challenge it answered:
// the first answer after the signer asked the CA to validate is most
// likely the CA's, and its request is woken answeredSettle later, rather
// than at its next poll (up to 10 s later). In a replica that does not
// sign (the CA reached another one), nothing is remembered and nothing
// happens.
func (p *Presentations) Answered(ch *v1alpha1.ACMEChallenge) {
	if !p.change(ch, func(pr *presentation) bool {
		first := pr.accepted && !pr.answered
		pr.answered = pr.accepted
		return first
	}) {
		return
	}
	woken := &v1alpha1.ACMEChallenge{ObjectMeta: *ch.ObjectMeta.DeepCopy(), Spec: v1alpha1.ACMEChallengeSpec{Order: ch.Spec.Order}}
	time.AfterFunc(answeredSettle, func() {
		select {
		case p.wake <- event.GenericEvent{Object: woken}:
		default: // the signer polls its requests anyway
		}
	})
}

// lasting returns the challenge's presentation and how much longer it must
// last before its status is written (0: now).
func (p *Presentations) lasting(ch *v1alpha1.ACMEChallenge) (presentation, time.Duration, bool) {
	if p == nil || ch.Status.Presented {
		return presentation{}, 0, false
	}
	pr, at, ok := p.memo.Get(ch.UID)
	if !ok || pr.generation != ch.Generation {
		return presentation{}, 0, false
	}
	return pr, max(p.quiet-time.Since(at), 0), true
}

// MarkPresented sets on a status the signer is about to write what the
// challenge controller would write once the presentation lasted: that the
// challenge is presented, and its routes. One write says both; the
// message is the signer's, about the CA.
func (p *Presentations) MarkPresented(ch *v1alpha1.ACMEChallenge) {
	if p == nil || ch.Status.Presented {
		return
	}
	if pr, _, ok := p.memo.Get(ch.UID); ok && pr.generation == ch.Generation {
		ch.Status.Presented = true
		ch.Status.Routes = withRecordedSecrets(ch.Status.Routes, pr.routes)
	}
}

// forget drops a presentation once the status says it.
func (p *Presentations) forget(ch *v1alpha1.ACMEChallenge) {
	if p != nil {
		p.memo.Delete(ch.UID)
	}
}
