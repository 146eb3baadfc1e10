package issuer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cert-manager/cert-manager/third_party/forked/acme"
	"github.com/cert-manager/issuer-lib/controllers/signer"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/kubeutil"
	"github.com/istio-acme/istio-acme-issuer/internal/metrics"
)

// ensureOrder returns the ACMEOrder of the request, creating it first, and
// whether this call created it. It is created just before the CA is asked
// for an order, so the CA's order URL has a place to be written to at once.
func (s *Signer) ensureOrder(ctx context.Context, cro signer.CertificateRequestObject, iss v1alpha1.ACMEIssuerObject, names []string) (*v1alpha1.ACMEOrder, bool, error) {
	order := &v1alpha1.ACMEOrder{}
	key := client.ObjectKey{Namespace: cro.GetNamespace(), Name: cro.GetName()}
	err := s.client.Get(ctx, key, order)
	if err == nil {
		return order, false, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, false, fmt.Errorf("reading ACMEOrder %s: %w", key, err)
	}
	order = &v1alpha1.ACMEOrder{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:       key.Namespace,
			Name:            key.Name,
			OwnerReferences: []metav1.OwnerReference{ownerRef(cro)},
		},
		Spec: v1alpha1.ACMEOrderSpec{
			Request:   cro.GetName(),
			IssuerRef: v1alpha1.IssuerReference{Kind: issuerKind(iss), Name: iss.GetName()},
			DNSNames:  names,
		},
	}
	v1alpha1.SetLabelIfValid(order, v1alpha1.LabelCertificateRequest, cro.GetName())
	order.SyncReadyCondition()
	if err := s.client.Create(ctx, order); err != nil {
		if apierrors.IsAlreadyExists(err) {
			// The cache was behind; read it from the next pass.
			return nil, false, signer.PendingError{Err: fmt.Errorf("waiting for ACMEOrder %s to appear in the cache", key), RequeueAfter: minPoll}
		}
		return nil, false, fmt.Errorf("creating ACMEOrder %s: %w", key, err)
	}
	return order, true, nil
}

// placeOrder asks the CA for a new order and records it. created says this
// pass created the ACMEOrder.
func (s *Signer) placeOrder(ctx context.Context, cro signer.CertificateRequestObject, iss v1alpha1.ACMEIssuerObject, acct *account, order *v1alpha1.ACMEOrder, created bool) (*acme.Order, error) {
	if o, ok := s.unrecorded.take(order.UID, acct.uri); ok {
		// Placed by an earlier pass whose write of the URL failed.
		return s.recordPlaced(ctx, cro, order, acct, o)
	}
	// An order may exist at the CA whose answer was never recorded: one
	// asked for after a claim, or at the ACMEOrder's creation (its status
	// never written).
	var unknownSince *metav1.Time
	switch {
	case order.Status.RequestedAt != nil:
		unknownSince = order.Status.RequestedAt
	case !created && len(order.Status.Conditions) == 0:
		unknownSince = &order.CreationTimestamp
	}
	// Record the attempt before asking the CA. The write fails when the
	// cache was behind (an order may already be recorded) or the API server
	// is unreachable: either way no order is placed that could not be
	// recorded.
	claim := order.DeepCopy()
	now := metav1.NewTime(s.clock.Now())
	claim.Status.RequestedAt = &now
	replaces := s.replacesFor(ctx, cro, order, acct)
	if replaces != "" {
		claim.Status.Replaces = replaces
	}
	claim.Status.Message = "asking the CA for an order for " + strings.Join(order.Spec.DNSNames, ", ")
	claim.SyncReadyCondition()
	// The creation of the ACMEOrder in this same pass is the claim: no
	// other pass can have placed an order for it, and one that finds its
	// status never written knows an order may exist (above). A replacement
	// is recorded before it is asked for: the CA counts it once.
	if !created || replaces != "" {
		if err := s.client.Status().Update(ctx, claim); err != nil {
			if apierrors.IsConflict(err) {
				return nil, signer.PendingError{Err: fmt.Errorf("ACMEOrder %s/%s changed meanwhile; reading it again before placing an order", order.Namespace, order.Name), RequeueAfter: minPoll}
			}
			return nil, fmt.Errorf("recording in ACMEOrder %s/%s that an order is being placed (no order is placed before that is recorded): %w", order.Namespace, order.Name, err)
		}
	}
	if unknownSince != nil {
		// Only now: a copy from a cache that is behind fails the claim.
		s.event(cro, corev1.EventTypeWarning, "OrderUnknown", "the request for an order at %s got no recorded answer (the controller stopped or lost the CA's answer); the CA may hold an order nobody uses, which it lets expire; placing a new one", unknownSince.UTC().Format(time.RFC3339))
		countOrder(order, metrics.OrderUnknown)
	}
	// Unwritten on creation, the claim is still the status written next:
	// the URL, or the failure, which keeps requestedAt when an order may
	// exist.
	*order = *claim

	var opts []acme.OrderOption
	if p := iss.GetSpec().Profile; p != "" {
		opts = append(opts, acme.WithOrderProfile(p))
	}
	o, replacesRefused, err := s.newOrder(ctx, cro, order, acct, replaces, opts)
	if err != nil {
		refused := !mayHaveReachedCA(err)
		err = caOutcome("creating an order for "+strings.Join(order.Spec.DNSNames, ", "), err)
		if refused && replaces != "" && !replacesRefused {
			// No order was created naming the certificate (the CA was
			// down, or held): the next attempt may name it again.
			if uerr := s.updateOrderStatus(ctx, order, func(st *v1alpha1.ACMEOrderStatus) { st.Replaces = "" }); uerr != nil {
				log.FromContext(ctx).Error(uerr, "recording that no order names the replaced certificate")
			}
		}
		return nil, s.orderFailed(ctx, cro, order, err, refused)
	}
	return s.recordPlaced(ctx, cro, order, acct, o)
}

// newOrder asks the CA for the order, naming the certificate it replaces
// when there is one. A CA that answers that with a problem (the certificate
// was already replaced, is unknown to it, or belongs to another account;
// Pebble answers 500 for an unknown one) is asked again at once without it,
// and the request says so once: the refused attempt created no order, and
// the request never offers replaces again. A rate limit, or no answer, is
// not a refusal of the replacement.
func (s *Signer) newOrder(ctx context.Context, cro signer.CertificateRequestObject, order *v1alpha1.ACMEOrder, acct *account, replaces string, opts []acme.OrderOption) (o *acme.Order, replacesRefused bool, err error) {
	ids := acme.DomainIDs(order.Spec.DNSNames...)
	if replaces != "" {
		octx, cancel := context.WithTimeout(ctx, caRequestTimeout)
		defer cancel()
		o, err := acct.client.AuthorizeOrder(octx, ids, append(slices.Clone(opts), acme.WithOrderReplacesCertID(replaces))...)
		var ae *acme.Error
		if err == nil || !errors.As(err, &ae) || ae.ProblemType == problemRateLimited {
			if err == nil {
				countReplaces(order, metrics.ReplacesAccepted)
			}
			return o, false, err
		}
		countReplaces(order, metrics.ReplacesRefused)
		s.event(cro, corev1.EventTypeWarning, "ReplacesRefused", "the CA refused to count the new order as the renewal of certificate %s (%s); ordering without it, so this renewal counts against the CA's rate limits", replaces, problemText(ae))
		replacesRefused = true
	}
	octx, cancel := context.WithTimeout(ctx, caRequestTimeout)
	defer cancel()
	o, err = acct.client.AuthorizeOrder(octx, ids, opts...)
	return o, replacesRefused, err
}

// recordPlaced writes a new order's URL and state into the ACMEOrder. When
// the write fails the order is kept in memory, and the next pass records it
// instead of placing another.
func (s *Signer) recordPlaced(ctx context.Context, cro signer.CertificateRequestObject, order *v1alpha1.ACMEOrder, acct *account, o *acme.Order) (*acme.Order, error) {
	msg := fmt.Sprintf("order %s created for %s", o.URI, strings.Join(order.Spec.DNSNames, ", "))
	if err := s.updateOrderStatus(ctx, order, func(st *v1alpha1.ACMEOrderStatus) {
		st.URL = o.URI
		st.AccountURI = acct.uri
		st.State = v1alpha1.OrderState(o.Status)
		st.FinalizeURL = o.FinalizeURL
		st.Authorizations = o.AuthzURLs
		st.Message = msg
		st.RequestedAt = nil
	}); err != nil {
		s.unrecorded.keep(order.UID, acct.uri, o)
		return nil, fmt.Errorf("recording order %s in ACMEOrder %s/%s (kept in memory and recorded on the next attempt): %w", o.URI, order.Namespace, order.Name, err)
	}
	// Logged, not an Event: the ACMEOrder shows the order, and the
	// request's Issued Event names it.
	log.FromContext(ctx).Info("ACME order created", "order", o.URI, "names", order.Spec.DNSNames)
	countOrder(order, metrics.OrderCreated)
	return o, nil
}

// orderFailed records a failure on the order; permanent failures also remove
// the challenges. refused says a request for a new order cannot have
// created one (the CA answered, or nothing was sent), so the ACMEOrder no
// longer says an order may exist.
func (s *Signer) orderFailed(ctx context.Context, cro signer.CertificateRequestObject, order *v1alpha1.ACMEOrder, err error, refused bool) error {
	requestedAt := order.Status.RequestedAt
	if uerr := s.updateOrderStatus(ctx, order, func(st *v1alpha1.ACMEOrderStatus) {
		st.Message = err.Error()
		switch {
		case refused:
			st.RequestedAt = nil
		case st.RequestedAt == nil:
			// Re-read after a conflict, or a claim not written.
			st.RequestedAt = requestedAt
		}
	}); uerr != nil {
		log.FromContext(ctx).Error(uerr, "recording the order's failure")
	}
	if errors.As(err, &signer.PermanentError{}) {
		if derr := s.deleteChallenges(ctx, order, nil); derr != nil {
			return derr
		}
		s.event(cro, corev1.EventTypeWarning, "OrderFailed", "%s", err.Error())
		countOrder(order, metrics.OrderInvalid)
	}
	return err
}

// replaceExpired forgets an order that outlived the CA's order lifetime, or
// whose authorization outlived its pending lifetime (1 hour at Let's
// Encrypt): resuming it cannot succeed, and a new order is placed on the
// next pass. An order cannot expire faster than its lifetime, so this never
// loops faster than that.
func (s *Signer) replaceExpired(ctx context.Context, cro signer.CertificateRequestObject, order *v1alpha1.ACMEOrder, why string) error {
	s.event(cro, corev1.EventTypeWarning, "OrderExpired", "%s; placing a new order", why)
	countOrder(order, metrics.OrderReset)
	if err := s.resetOrder(ctx, order); err != nil {
		return err
	}
	return signer.PendingError{Err: fmt.Errorf("%s; placing a new order", why), RequeueAfter: minPoll}
}

// expiredOnly says why an order that is no longer usable only expired (the
// order past its lifetime, or authorizations that expired while pending,
// none that failed), or "" when it failed for another reason.
func (s *Signer) expiredOnly(ctx context.Context, acct *account, o *acme.Order) string {
	if o.Error != nil {
		return ""
	}
	var expired []string
	for _, u := range o.AuthzURLs {
		a, err := acct.client.GetAuthorization(ctx, u)
		if err != nil {
			return ""
		}
		switch {
		case a.Status == acme.StatusExpired,
			a.Status == acme.StatusPending && !a.Expires.IsZero() && !s.clock.Now().Before(a.Expires):
			expired = append(expired, a.Identifier.Value)
		case a.Status != acme.StatusValid:
			return ""
		}
	}
	switch {
	case len(expired) > 0:
		return fmt.Sprintf("order %s is %s: the authorizations for %s expired before they were validated, past the CA's pending lifetime", o.URI, o.Status, strings.Join(expired, ", "))
	case o.Status == acme.StatusExpired, !o.Expires.IsZero() && !s.clock.Now().Before(o.Expires):
		return fmt.Sprintf("order %s is %s: it expired at %s, past the CA's order lifetime", o.URI, o.Status, o.Expires.UTC().Format(time.RFC3339))
	}
	return ""
}

// failureReason explains an invalid order from its failed authorizations.
func (s *Signer) failureReason(ctx context.Context, acct *account, o *acme.Order) (reason string, invalidHosts []string) {
	var reasons []string
	if o.Error != nil {
		reasons = append(reasons, problemText(o.Error))
	}
	for _, u := range o.AuthzURLs {
		a, err := acct.client.GetAuthorization(ctx, u)
		if err != nil || a.Status == acme.StatusValid {
			continue
		}
		invalidHosts = append(invalidHosts, a.Identifier.Value)
		explained := false
		for _, c := range a.Challenges {
			if c.Error != nil {
				explained = true
				var ae *acme.Error
				if errors.As(c.Error, &ae) {
					reasons = append(reasons, fmt.Sprintf("%s: %s", a.Identifier.Value, problemText(ae)))
				} else {
					reasons = append(reasons, fmt.Sprintf("%s: %v", a.Identifier.Value, c.Error))
				}
			}
		}
		switch {
		case explained, a.Status == acme.StatusPending:
		case a.Status == acme.StatusDeactivated:
			// Nothing failed: the account's key (another client sharing
			// the account) or the CA withdrew the authorization.
			reasons = append(reasons, fmt.Sprintf("%s: the authorization was deactivated before it was validated, by a client holding the account's key or by the CA; cert-manager retries with a new request after its backoff (`cmctl renew` retries now)", a.Identifier.Value))
		default:
			reasons = append(reasons, fmt.Sprintf("%s: the authorization is %s", a.Identifier.Value, a.Status))
		}
	}
	if len(reasons) == 0 {
		reasons = append(reasons, "no reason given")
	}
	return fmt.Sprintf("the CA marked order %s %s: %s", o.URI, o.Status, strings.Join(reasons, "; ")), invalidHosts
}

// recordOrder records a change of the order's state at the CA, with what
// led to it; progress within a state is reported on the request only.
func (s *Signer) recordOrder(ctx context.Context, order *v1alpha1.ACMEOrder, o *acme.Order, msg string) error {
	if order.Status.State == v1alpha1.OrderState(o.Status) {
		return nil
	}
	return s.updateOrderStatus(ctx, order, func(st *v1alpha1.ACMEOrderStatus) {
		st.State = v1alpha1.OrderState(o.Status)
		st.Message = msg
	})
}

func (s *Signer) updateOrderStatus(ctx context.Context, order *v1alpha1.ACMEOrder, mutate func(*v1alpha1.ACMEOrderStatus)) error {
	return kubeutil.UpdateStatus(ctx, s.client, order, func(o *v1alpha1.ACMEOrder) {
		mutate(&o.Status)
		o.SyncReadyCondition()
	})
}

// resetOrder forgets the CA order so the next pass places a new one.
func (s *Signer) resetOrder(ctx context.Context, order *v1alpha1.ACMEOrder) error {
	if err := s.deleteChallenges(ctx, order, nil); err != nil {
		return err
	}
	return s.updateOrderStatus(ctx, order, func(st *v1alpha1.ACMEOrderStatus) {
		// Replaces stays: it is offered on the request's first order only.
		*st = v1alpha1.ACMEOrderStatus{Replaces: st.Replaces}
	})
}

func countReplaces(order *v1alpha1.ACMEOrder, outcome string) {
	metrics.Replaces.WithLabelValues(order.Spec.IssuerRef.Kind, issuerLabel(order), outcome).Inc()
}

func countOrder(order *v1alpha1.ACMEOrder, outcome string) {
	metrics.Orders.WithLabelValues(order.Spec.IssuerRef.Kind, issuerLabel(order), outcome).Inc()
}
