package issuer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/cert-manager/cert-manager/third_party/forked/acme"
	"github.com/cert-manager/issuer-lib/controllers/signer"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/kubeutil"
	"github.com/istio-acme/istio-acme-issuer/internal/metrics"
)

// solve moves each of the order's authorizations one step (solveOne) and
// returns a one-line progress report per name.
func (s *Signer) solve(ctx context.Context, cro signer.CertificateRequestObject, iss v1alpha1.ACMEIssuerObject, acct *account, order *v1alpha1.ACMEOrder, o *acme.Order) (string, error) {
	challenges, err := s.challengesByAuthorization(ctx, order, o.AuthzURLs)
	if err != nil {
		return "", err
	}
	progress := make([]string, 0, len(o.AuthzURLs))
	for _, authzURL := range o.AuthzURLs {
		p, err := s.solveOne(ctx, cro, iss, acct, order, authzURL, challenges[authzURL])
		if err != nil {
			return "", err
		}
		progress = append(progress, p)
	}
	return strings.Join(progress, "; "), nil
}

// solveOne moves one authorization forward and says where its name
// stands: its challenge (ch, nil before it exists) is created, then
// published by the challenge controller, then the CA is asked to validate
// it. While a validation is young the order's status is trusted and the
// CA asked nothing more; after that the authorization is read too, so the
// report says which name is done and which one the CA failed.
func (s *Signer) solveOne(ctx context.Context, cro signer.CertificateRequestObject, iss v1alpha1.ACMEIssuerObject, acct *account, order *v1alpha1.ACMEOrder, authzURL string, ch *v1alpha1.ACMEChallenge) (string, error) {
	if ch != nil {
		since, accepted := s.validatingFor(ch)
		switch {
		case !s.presentations.Presented(ch):
			return s.publishing(cro, ch), nil
		case !accepted:
			if err := s.accept(ctx, cro, acct, ch); err != nil {
				return "", err
			}
			return ch.Spec.DNSName + ": the CA is validating", nil
		case since < quietValidation:
			return ch.Spec.DNSName + ": the CA is validating", nil
		}
	}

	a, err := acct.client.GetAuthorization(ctx, authzURL)
	if err != nil {
		return "", caOutcome("reading authorization "+authzURL, err)
	}
	host := a.Identifier.Value
	chal := http01(a)
	switch a.Status {
	case acme.StatusValid:
		if ch != nil {
			if err := s.setChallengeState(ctx, ch, v1alpha1.ChallengeValid, "validated by the CA"); err != nil {
				return "", err
			}
		}
		return host + ": validated", nil
	case acme.StatusPending:
	default:
		// invalid, deactivated, expired: the order turns invalid too, and
		// the next pass reports why.
		detail := fmt.Sprintf("authorization %s", a.Status)
		if chal != nil && chal.Error != nil {
			detail += ": " + chal.Error.Error()
		}
		if ch != nil {
			if err := s.setChallengeState(ctx, ch, v1alpha1.ChallengeInvalid, detail); err != nil {
				return "", err
			}
		}
		return host + ": " + detail, nil
	}

	if chal == nil {
		return "", signer.PermanentError{Err: fmt.Errorf("the CA offers no http-01 challenge for %s (it offers %s); this issuer solves HTTP-01 only", host, challengeTypes(a))}
	}
	if ch != nil && chal.Status == acme.StatusInvalid {
		// Some CAs (step-ca) leave the authorization, and so the order,
		// pending when its only challenge failed; a failed challenge is
		// final (RFC 8555 section 7.1.6), so the order cannot succeed.
		detail := "the CA found its http-01 challenge invalid"
		if chal.Error != nil {
			detail += ": " + chal.Error.Error()
		}
		if err := s.setChallengeState(ctx, ch, v1alpha1.ChallengeInvalid, detail); err != nil {
			return "", err
		}
		return "", signer.PermanentError{Err: fmt.Errorf("%s: %s (the CA still calls the authorization pending, but a failed challenge cannot succeed)", host, detail)}
	}
	if ch != nil {
		// Accepted long ago and still pending at the CA: from now on the
		// challenge says so too, where kubectl shows it.
		since, _ := s.validatingFor(ch)
		if since >= validatingShown {
			if err := s.setChallengeState(ctx, ch, v1alpha1.ChallengeProcessing, "the CA is validating "+ch.Spec.URL); err != nil {
				return "", err
			}
		}
		return host + ": the CA is validating" + validatingSince(since), nil
	}
	if _, err := s.ensureChallenge(ctx, cro, iss, acct, order, a, chal); err != nil {
		return "", err
	}
	return host + ": publishing routes", nil
}

// publishing reports a challenge whose routes are not published yet.
func (s *Signer) publishing(cro signer.CertificateRequestObject, ch *v1alpha1.ACMEChallenge) string {
	msg := ch.Spec.DNSName + ": publishing routes"
	if ch.Status.Message != "" {
		msg += " (" + ch.Status.Message + ")"
		// The challenge controller writes a message only once the routes
		// could not be published for a while: a problem, said once more
		// where `cmctl status certificate` lists Events, when the
		// request's message does not show it yet.
		if !showsProgress(cro, msg) {
			s.event(cro, corev1.EventTypeWarning, "NotPresented", "%s: %s", ch.Spec.DNSName, ch.Status.Message)
		}
	}
	return msg
}

// showsProgress reports whether the request's Ready message already holds
// part of a progress report, as one of its "; "-separated parts.
func showsProgress(cro signer.CertificateRequestObject, part string) bool {
	for _, c := range cro.GetConditions() {
		if c.Type == string(cmapi.CertificateRequestConditionReady) {
			return strings.Contains(c.Message, pendingPrefix+part) || strings.Contains(c.Message, "; "+part)
		}
	}
	return false
}

// validatingSince says how long a validation has been pending in whole
// minutes, and nothing in the first minute: the message is the request's
// status and an Event each time it changes, so it must not change on every
// pass.
func validatingSince(d time.Duration) string {
	if d < time.Minute {
		return ""
	}
	return fmt.Sprintf(" (for over %d min)", int(d/time.Minute))
}

// quietValidation is how long a validation is left to the order's status
// before its authorization is read as well (a CA that leaves the order
// pending when a challenge failed, as step-ca does, is heard then). A
// validation usually lasts well under a second.
const quietValidation = 10 * time.Second

// validatingShown is how long a validation lasts before the challenge's
// status says it is validating. Under load (hundreds of orders at once) a
// validation waits its turn in every queue for tens of seconds, and a
// status write per name costs the API server more than anyone reads: the
// request's progress says "the CA is validating" meanwhile.
const validatingShown = 30 * time.Second

// validatingFor is how long ago the challenge was accepted, and whether it
// was: remembered since this process asked the CA, or recorded on the
// challenge (long ago when its time was not).
func (s *Signer) validatingFor(ch *v1alpha1.ACMEChallenge) (time.Duration, bool) {
	if _, at, ok := s.accepted.Get(ch.UID); ok {
		return s.clock.Since(at), true
	}
	switch {
	case ch.Status.State == "":
		return 0, false
	case ch.Status.AcceptedAt == nil:
		return quietValidation, true
	}
	return s.clock.Since(ch.Status.AcceptedAt.Time), true
}

// accept asks the CA to validate a challenge whose routes are in place.
func (s *Signer) accept(ctx context.Context, cro signer.CertificateRequestObject, acct *account, ch *v1alpha1.ACMEChallenge) error {
	host := ch.Spec.DNSName
	if _, err := acct.client.Accept(ctx, &acme.Challenge{Type: "http-01", URI: ch.Spec.URL, Token: ch.Spec.Token}); err != nil {
		// An earlier request may have been accepted and its answer lost:
		// the CA then refuses to be asked again (a 4xx such as malformed:
		// the challenge is no longer pending). Whether it was is the
		// challenge's state. A server error or a rate limit is no such
		// refusal: it is retried without another round trip.
		var ae *acme.Error
		if errors.As(err, &ae) && ae.StatusCode >= 400 && ae.StatusCode < 500 && ae.ProblemType != problemRateLimited {
			c, gerr := acct.client.GetChallenge(ctx, ch.Spec.URL)
			switch {
			case gerr != nil:
				// Unknown whether it was accepted: ask again later rather
				// than fail the request on the CA's refusal.
				return fmt.Errorf("asking the CA to validate %s: the CA answered %s, and reading the challenge's state failed: %w", host, problemText(ae), caOutcome("reading challenge "+ch.Spec.URL, gerr))
			case c.Status != acme.StatusPending:
				log.FromContext(ctx).Info("challenge already accepted; the answer to an earlier request was lost", "challenge", ch.Spec.URL, "status", c.Status)
				s.accepted.Set(ch.UID, struct{}{}, s.clock.Now())
				s.presentations.Accepted(ch)
				return nil
			}
		}
		return caOutcome("asking the CA to validate "+host, err)
	}
	// Remembered, not written: the CA usually decides within
	// quietValidation, and the challenge records a validation that lasts
	// (with its presentation: the challenge controller leaves that write
	// to this one).
	s.accepted.Set(ch.UID, struct{}{}, s.clock.Now())
	s.presentations.Accepted(ch)
	metrics.Challenges.WithLabelValues(metrics.ChallengeAccepted).Inc()
	// Logged, not an Event: one per name would double the Events of every
	// issuance, and the ACMEChallenge's status says the same.
	log.FromContext(ctx).Info("asked the CA to validate", "host", host, "url", "http://"+host+"/.well-known/acme-challenge/"+ch.Spec.Token)
	return nil
}

// challengesByAuthorization returns the order's challenges (from the cache)
// by authorization URL. Each is first read by its name, made from the order
// and the name it proves; only when that does not find one for each of
// authzURLs (none created yet, or the CA spells a name differently) are the
// order's challenges listed.
func (s *Signer) challengesByAuthorization(ctx context.Context, order *v1alpha1.ACMEOrder, authzURLs []string) (map[string]*v1alpha1.ACMEChallenge, error) {
	out := map[string]*v1alpha1.ACMEChallenge{}
	for _, host := range order.Spec.DNSNames {
		ch := &v1alpha1.ACMEChallenge{}
		key := client.ObjectKey{Namespace: order.Namespace, Name: challengeName(order.Name, host)}
		if err := s.client.Get(ctx, key, ch); apierrors.IsNotFound(err) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("reading ACMEChallenge %s: %w", key, err)
		}
		if ch.Spec.Order == order.Name && ch.DeletionTimestamp == nil {
			out[ch.Spec.AuthorizationURL] = ch
		}
	}
	if !slices.ContainsFunc(authzURLs, func(u string) bool { return out[u] == nil }) {
		return out, nil
	}
	mine, err := s.orderChallenges(ctx, order)
	if err != nil {
		return nil, err
	}
	clear(out)
	for _, ch := range mine {
		out[ch.Spec.AuthorizationURL] = ch
	}
	return out, nil
}

// orderChallenges lists the order's challenges, not being deleted, from the
// cache: by the order's label, so that only they are copied (the whole
// namespace's, with hundreds of orders in flight, made each pass cost as
// much as all of them), or, for an order whose name is too long for a
// label, the namespace's.
func (s *Signer) orderChallenges(ctx context.Context, order *v1alpha1.ACMEOrder) ([]*v1alpha1.ACMEChallenge, error) {
	opts := []client.ListOption{client.InNamespace(order.Namespace)}
	if len(validation.IsValidLabelValue(order.Name)) == 0 {
		opts = append(opts, client.MatchingLabels{v1alpha1.LabelOrder: order.Name})
	}
	var list v1alpha1.ACMEChallengeList
	if err := s.client.List(ctx, &list, opts...); err != nil {
		return nil, fmt.Errorf("listing the challenges of ACMEOrder %s/%s: %w", order.Namespace, order.Name, err)
	}
	var mine []*v1alpha1.ACMEChallenge
	for i := range list.Items {
		if ch := &list.Items[i]; ch.Spec.Order == order.Name && ch.DeletionTimestamp == nil {
			mine = append(mine, ch)
		}
	}
	return mine, nil
}

func http01(a *acme.Authorization) *acme.Challenge {
	for _, c := range a.Challenges {
		if c.Type == "http-01" {
			return c
		}
	}
	return nil
}

func challengeTypes(a *acme.Authorization) string {
	var types []string
	for _, c := range a.Challenges {
		types = append(types, c.Type)
	}
	if len(types) == 0 {
		return "none"
	}
	return strings.Join(types, ", ")
}

// challengeName is stable per order and host, so a retry finds the object
// an earlier pass created.
func challengeName(order, host string) string {
	sum := sha256.Sum256([]byte(host))
	suffix := "-" + hex.EncodeToString(sum[:5])
	if max := 253 - len(suffix); len(order) > max {
		order = order[:max]
	}
	return order + suffix
}

// ensureChallenge returns the ACMEChallenge that proves an authorization,
// creating it with the issuer's solver settings (which the challenge
// controller routes by) and the namespace it is judged for. One left by an
// earlier order of the same request is deleted first.
func (s *Signer) ensureChallenge(ctx context.Context, cro signer.CertificateRequestObject, iss v1alpha1.ACMEIssuerObject, acct *account, order *v1alpha1.ACMEOrder, a *acme.Authorization, chal *acme.Challenge) (*v1alpha1.ACMEChallenge, error) {
	host := a.Identifier.Value
	ch := &v1alpha1.ACMEChallenge{}
	key := client.ObjectKey{Namespace: order.Namespace, Name: challengeName(order.Name, host)}
	err := s.client.Get(ctx, key, ch)
	if err == nil && ch.Spec.Token == chal.Token {
		return ch, nil
	}
	if err == nil {
		// A leftover from an earlier order of the same request.
		if err := s.client.Delete(ctx, ch); client.IgnoreNotFound(err) != nil {
			return nil, fmt.Errorf("deleting stale ACMEChallenge %s: %w", key, err)
		}
		return nil, signer.PendingError{Err: fmt.Errorf("%s: replacing a stale challenge", host), RequeueAfter: minPoll}
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading ACMEChallenge %s: %w", key, err)
	}
	keyAuth, err := acct.client.HTTP01ChallengeResponse(chal.Token)
	if err != nil {
		return nil, fmt.Errorf("computing the key authorization for %s: %w", host, err)
	}
	ch = &v1alpha1.ACMEChallenge{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: key.Namespace,
			Name:      key.Name,
			// No finalizer: routes in this namespace are owned by the
			// challenge, and the challenge controller adds the finalizer
			// only before it writes anything elsewhere.
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion:         v1alpha1.GroupVersion.String(),
				Kind:               "ACMEOrder",
				Name:               order.Name,
				UID:                order.UID,
				Controller:         ptr.To(true),
				BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: v1alpha1.ACMEChallengeSpec{
			Order:            order.Name,
			DNSName:          host,
			Token:            chal.Token,
			Key:              keyAuth,
			URL:              chal.URI,
			AuthorizationURL: a.URI,
			Solver:           iss.GetSpec().Solver.Istio,
		},
	}
	v1alpha1.SetLabelIfValid(ch, v1alpha1.LabelCertificateRequest, order.Spec.Request)
	v1alpha1.SetLabelIfValid(ch, v1alpha1.LabelOrder, order.Name)
	if requester, _, err := s.requesterOf(ctx, cro); err != nil {
		return nil, err
	} else if requester != cro.GetNamespace() {
		ch.Spec.RequesterNamespace = requester
	}
	if err := s.client.Create(ctx, ch); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating ACMEChallenge %s: %w", key, err)
	}
	log.FromContext(ctx).V(1).Info("created challenge", "host", host, "challenge", key.Name, "token", chal.Token)
	return ch, nil
}

func (s *Signer) setChallengeState(ctx context.Context, ch *v1alpha1.ACMEChallenge, state v1alpha1.ChallengeState, msg string) error {
	switch {
	case ch.Status.State == state:
	case state == v1alpha1.ChallengeValid:
		metrics.Challenges.WithLabelValues(metrics.ChallengeValid).Inc()
	case state == v1alpha1.ChallengeInvalid:
		metrics.Challenges.WithLabelValues(metrics.ChallengeInvalid).Inc()
	}
	changed := ch.Status.State != state
	if err := kubeutil.UpdateStatus(ctx, s.client, ch, func(ch *v1alpha1.ACMEChallenge) {
		if state == v1alpha1.ChallengeProcessing && ch.Status.AcceptedAt == nil {
			_, at, ok := s.accepted.Get(ch.UID)
			if !ok {
				at = s.clock.Now()
			}
			ch.Status.AcceptedAt = &metav1.Time{Time: at}
		}
		s.presentations.MarkPresented(ch)
		ch.Status.State = state
		ch.Status.Message = msg
		ch.SyncReadyCondition("")
	}); err != nil {
		return err
	}
	if changed && state == v1alpha1.ChallengeInvalid {
		s.invalidEvent(ch, msg)
	}
	return nil
}

// invalidEvent records the CA's failed validation on the challenge itself,
// where `kubectl describe acmechallenge` shows it, and where it stays once
// the challenge is gone. A validation that succeeded records none: nobody
// has anything to do, and the request's Issued Event names the order.
func (s *Signer) invalidEvent(ch *v1alpha1.ACMEChallenge, msg string) {
	if s.events == nil {
		return
	}
	s.events.Eventf(ch, nil, corev1.EventTypeWarning, v1alpha1.ChallengeReasonInvalid, "Validate", "%s", msg)
}

// deleteChallenges removes the order's challenges; the garbage collector
// removes the routes they own, and their finalizer the rest.
//
// With settled, the order has ended at the CA: each challenge the CA was
// asked to validate and whose outcome was not seen is counted with the
// outcome settled gives for its host.
func (s *Signer) deleteChallenges(ctx context.Context, order *v1alpha1.ACMEOrder, settled func(host string) string) error {
	mine, err := s.orderChallenges(ctx, order)
	if err != nil {
		return err
	}
	labelled := !slices.ContainsFunc(mine, func(ch *v1alpha1.ACMEChallenge) bool { return ch.Labels[v1alpha1.LabelOrder] != order.Name })
	if len(mine) > 1 && labelled {
		// One request for all of them; every challenge of the order
		// carries its label.
		if err := s.client.DeleteAllOf(ctx, &v1alpha1.ACMEChallenge{}, client.InNamespace(order.Namespace), client.MatchingLabels{v1alpha1.LabelOrder: order.Name}); err != nil {
			return fmt.Errorf("deleting the ACMEChallenges of ACMEOrder %s/%s: %w", order.Namespace, order.Name, err)
		}
	} else {
		for _, ch := range mine {
			if err := s.client.Delete(ctx, ch); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("deleting ACMEChallenge %s/%s: %w", ch.Namespace, ch.Name, err)
			}
		}
	}
	for _, ch := range mine {
		_, accepted := s.validatingFor(ch)
		s.accepted.Delete(ch.UID)
		if settled == nil || !accepted || ch.Status.State == v1alpha1.ChallengeValid || ch.Status.State == v1alpha1.ChallengeInvalid {
			continue
		}
		outcome := settled(ch.Spec.DNSName)
		metrics.Challenges.WithLabelValues(outcome).Inc()
		if outcome == metrics.ChallengeInvalid {
			s.invalidEvent(ch, "the CA's validation failed; ACMEOrder "+order.Name+" gives the CA's reason")
		}
	}
	return nil
}
