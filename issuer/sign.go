package issuer

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/cert-manager/cert-manager/pkg/util/pki"
	issuerapi "github.com/cert-manager/issuer-lib/api/v1alpha1"
	"github.com/cert-manager/issuer-lib/controllers/signer"
	"golang.org/x/crypto/acme"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/dnsname"
	"github.com/istio-acme/istio-acme-issuer/internal/kubeutil"
	"github.com/istio-acme/istio-acme-issuer/internal/metrics"
	"github.com/istio-acme/istio-acme-issuer/solver"
)

// Signer implements issuer-lib's Sign and Check for ACMEIssuer and
// ACMEClusterIssuer.
type Signer struct {
	client   client.Client
	events   events.EventRecorder
	clock    clock.PassiveClock
	accounts *accounts
	// unrecorded holds orders placed whose URL could not be written yet.
	unrecorded unrecordedOrders
	// authorize and refusalGrace: see Options.
	authorize        AuthorizeFunc
	refusalGrace     time.Duration
	namespacedPolicy func(v1alpha1.IstioHTTP01Solver) string
	requester        solver.RequesterFunc
	// refused are the requests the tenancy rule refuses, woken when
	// users' Gateways or the HostnameGrants change.
	refused kubeutil.KeySet
}

// AuthorizeFunc decides the tenancy rule: why namespace may not get some of
// the names through the solver's gateways, or "" when it may get all.
type AuthorizeFunc func(ctx context.Context, namespace string, sol v1alpha1.IstioHTTP01Solver, gatewaysField string, names []string) (string, error)

// Options configure a Signer.
type Options struct {
	// Client reads and writes our objects and CertificateRequests (cached).
	Client client.Client
	// Secrets reads and writes account key Secrets; an uncached client, so
	// the controller never watches every Secret of the cluster.
	Secrets client.Client
	// Events records events on CertificateRequests and issuers.
	Events events.EventRecorder
	// ClusterResourceNamespace holds the Secrets of ACMEClusterIssuers.
	ClusterResourceNamespace string
	// UserAgent is sent to the ACME server.
	UserAgent string
	// Clock defaults to the real clock.
	Clock clock.PassiveClock
	// Authorize, when set, is asked on every pass before anything is sent
	// to the CA: a request whose namespace may not get its names stays
	// pending with the reason, and no order is placed.
	Authorize AuthorizeFunc
	// RefusalGrace is how long after its creation a refused request stays
	// pending (decided again whenever Gateways or grants change) before it
	// fails with the reason.
	RefusalGrace time.Duration
	// NamespacedPolicy, when set, says why a namespaced ACMEIssuer may not
	// use its spec.solver.istio (gateway namespace, gateway pods, token
	// Service the platform did not allow), or "". Checked when the issuer
	// is checked and before any of its requests reaches the CA.
	NamespacedPolicy func(v1alpha1.IstioHTTP01Solver) string
	// Requester, when set, tells the namespace a request asks for (the
	// Gateway's, for a Certificate of the Gateway shim): the tenancy rule
	// judges that namespace, and the challenges' routes are written there.
	Requester solver.RequesterFunc
}

// NewSigner returns a Signer.
func NewSigner(o Options) *Signer {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return &Signer{
		client:           o.Client,
		events:           o.Events,
		clock:            o.Clock,
		authorize:        o.Authorize,
		refusalGrace:     o.RefusalGrace,
		namespacedPolicy: o.NamespacedPolicy,
		requester:        o.Requester,
		accounts: &accounts{
			secrets:                  o.Secrets,
			clusterResourceNamespace: o.ClusterResourceNamespace,
			userAgent:                o.UserAgent,
		},
	}
}

const (
	// finalizeTimeout bounds the finalize call, which waits for the CA to
	// issue; past it the order is looked at again on the next pass.
	finalizeTimeout = 10 * time.Second
	minPoll         = 100 * time.Millisecond
	maxPoll         = 10 * time.Second
)

// +kubebuilder:rbac:groups=istio-acme.io,resources=acmeorders,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=istio-acme.io,resources=acmeorders/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=istio-acme.io,resources=acmechallenges,verbs=get;list;watch;create;update;patch;delete;deletecollection
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;create;update,namespace=issuer-secrets
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// Sign moves the request's ACME order one step forward and returns the
// certificate once the CA issued it. It never waits for the CA: while the
// order is in flight it returns a PendingError whose message tells the user
// where each name stands, and it is called again on a short requeue or when
// a challenge's routes are published.
func (s *Signer) Sign(ctx context.Context, cro signer.CertificateRequestObject, obj issuerapi.Issuer) (signer.PEMBundle, error) {
	iss, ok := obj.(v1alpha1.ACMEIssuerObject)
	if !ok {
		return signer.PEMBundle{}, signer.PermanentError{Err: fmt.Errorf("unexpected issuer type %T", obj)}
	}
	details, err := cro.GetCertificateDetails()
	if err != nil {
		return signer.PEMBundle{}, signer.PermanentError{Err: fmt.Errorf("reading the request: %w", err)}
	}
	csr, names, err := parseCSR(details.CSR)
	if err != nil {
		return signer.PEMBundle{}, signer.PermanentError{Err: err}
	}
	if err := s.authorized(ctx, cro, iss, names); err != nil {
		return signer.PEMBundle{}, err
	}

	acct, err := s.accounts.forSigning(ctx, iss)
	if err != nil {
		var perm signer.PermanentError
		if errors.As(err, &perm) {
			return signer.PEMBundle{}, signer.IssuerError{Err: err}
		}
		return signer.PEMBundle{}, err
	}

	order, err := s.ensureOrder(ctx, cro, iss, names)
	if err != nil {
		return signer.PEMBundle{}, err
	}
	if order.Status.URL != "" && order.Status.AccountURI != acct.uri {
		// The issuer now uses another account, which cannot see this order.
		s.event(cro, corev1.EventTypeWarning, "OrderReset", "order %s belongs to account %s but the issuer now uses %s; placing a new order", order.Status.URL, order.Status.AccountURI, acct.uri)
		countOrder(order, metrics.OrderReset)
		if err := s.resetOrder(ctx, order); err != nil {
			return signer.PEMBundle{}, err
		}
	}
	var o *acme.Order
	if order.Status.URL == "" {
		// The new order's challenges are published in this same pass.
		if o, err = s.placeOrder(ctx, cro, iss, acct, order); err != nil {
			return signer.PEMBundle{}, err
		}
	} else if o, err = acct.client.GetOrder(ctx, order.Status.URL); err != nil {
		if isNotFound(err) {
			gone := order.Status.URL
			s.event(cro, corev1.EventTypeWarning, "OrderReset", "order %s is gone at the CA; placing a new order", gone)
			countOrder(order, metrics.OrderReset)
			if err := s.resetOrder(ctx, order); err != nil {
				return signer.PEMBundle{}, err
			}
			// Never nil with no certificate: issuer-lib would mark the
			// request issued.
			return signer.PEMBundle{}, signer.PendingError{Err: fmt.Errorf("order %s is gone at the CA; placing a new order", gone), RequeueAfter: minPoll}
		}
		return signer.PEMBundle{}, caOutcome("reading order "+order.Status.URL, err)
	}
	pollIn := s.pollInterval(cro)

	switch o.Status {
	case acme.StatusPending:
		progress, err := s.solve(ctx, cro, acct, order, o)
		if err != nil {
			return signer.PEMBundle{}, err
		}
		if err := s.recordOrder(ctx, order, o, progress); err != nil {
			return signer.PEMBundle{}, err
		}
		return signer.PEMBundle{}, signer.PendingError{Err: errors.New(progress), RequeueAfter: pollIn}

	case acme.StatusReady:
		fctx, cancel := context.WithTimeout(ctx, finalizeTimeout)
		defer cancel()
		der, issuing, err := finalize(fctx, acct.client, o, csr.Raw)
		if issuing {
			// The order's state is recorded when it is read next.
			return signer.PEMBundle{}, signer.PendingError{Err: errors.New("the CA is issuing the certificate"), RequeueAfter: pollIn}
		}
		if err != nil {
			if fctx.Err() != nil && ctx.Err() == nil {
				return signer.PEMBundle{}, signer.PendingError{Err: errors.New("the CA is still issuing the certificate"), RequeueAfter: pollIn}
			}
			outcome := caOutcome("finalizing order "+order.Status.URL, err)
			var ae *acme.Error
			if errors.As(err, &ae) && ae.ProblemType == problemUnauthorized {
				// The CA refuses this CSR for this order; sending it
				// again cannot change that.
				outcome = signer.PermanentError{Err: fmt.Errorf("%w; the CSR's names must be exactly the order's: %s", outcome, strings.Join(order.Spec.DNSNames, ", "))}
			}
			return signer.PEMBundle{}, s.orderFailed(ctx, cro, order, outcome, false)
		}
		return s.issued(ctx, cro, order, o, der)

	case acme.StatusProcessing:
		if err := s.recordOrder(ctx, order, o, "the CA is issuing the certificate"); err != nil {
			return signer.PEMBundle{}, err
		}
		return signer.PEMBundle{}, signer.PendingError{Err: errors.New("the CA is issuing the certificate"), RequeueAfter: pollIn}

	case acme.StatusValid:
		der, err := acct.client.FetchCert(ctx, o.CertURL, true)
		if err != nil {
			return signer.PEMBundle{}, caOutcome("downloading the certificate from "+o.CertURL, err)
		}
		return s.issued(ctx, cro, order, o, der)

	default: // invalid, or expired and deactivated
		reason, invalid := s.failureReason(ctx, acct, o)
		if err := s.recordOrder(ctx, order, o, reason); err != nil {
			return signer.PEMBundle{}, err
		}
		if err := s.deleteChallenges(ctx, order, func(host string) string {
			if slices.Contains(invalid, host) {
				return metrics.ChallengeInvalid
			}
			return metrics.ChallengeValid
		}); err != nil {
			return signer.PEMBundle{}, err
		}
		s.event(cro, corev1.EventTypeWarning, "OrderFailed", "%s", reason)
		countOrder(order, metrics.OrderInvalid)
		return signer.PEMBundle{}, signer.PermanentError{Err: errors.New(reason)}
	}
}

// parseCSR returns the CSR and the DNS names to order, refusing what HTTP-01
// cannot prove and what CAs would refuse (names that are not host names,
// too many of them, or written otherwise than CAs compare them).
func parseCSR(csrPEM []byte) (*x509.CertificateRequest, []string, error) {
	csr, err := pki.DecodeX509CertificateRequestBytes(csrPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("decoding the request's CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, nil, fmt.Errorf("the request's CSR signature is invalid: %w", err)
	}
	if len(csr.IPAddresses) > 0 || len(csr.URIs) > 0 || len(csr.EmailAddresses) > 0 {
		return nil, nil, errors.New("the request asks for IP, URI or email subject alternative names; this issuer orders DNS names only: list the host names in spec.dnsNames of the Certificate")
	}
	names := slices.Clone(csr.DNSNames)
	if cn := csr.Subject.CommonName; cn != "" && !slices.Contains(names, cn) {
		names = append(names, cn)
	}
	if len(names) == 0 {
		return nil, nil, errors.New("the request has no DNS names: set spec.dnsNames on the Certificate")
	}
	seen := map[string]bool{}
	for _, n := range csr.DNSNames {
		folded := dnsname.Canonical(n)
		if n != folded || seen[n] {
			// CAs check the CSR's names against the order's at finalization,
			// some as written: a name the order would carry differently
			// fails there, after the challenges were solved.
			return nil, nil, fmt.Errorf("the request lists %q, which is not written as the CA compares names (lower case, no trailing dot, each name once): write it as %q, once, in spec.dnsNames (and spec.commonName) of the Certificate", n, folded)
		}
		seen[n] = true
	}
	var wildcards []string
	for i, n := range names {
		names[i] = dnsname.Canonical(n)
		if strings.Contains(n, "*") {
			wildcards = append(wildcards, n)
		}
		if net.ParseIP(n) != nil {
			return nil, nil, fmt.Errorf("%q is an IP address; this issuer orders DNS names only", n)
		}
	}
	if len(wildcards) > 0 {
		return nil, nil, fmt.Errorf("HTTP-01 cannot prove wildcard names (%s): ACME CAs accept only DNS-01 for them. Use an issuer with a DNS-01 solver for wildcards, or list each host name in the Certificate", strings.Join(wildcards, ", "))
	}
	for _, n := range names {
		if why := hostNameProblem(n); why != "" {
			return nil, nil, fmt.Errorf("%q is not a host name an ACME CA issues for: %s; correct it in spec.dnsNames (or spec.commonName) of the Certificate", n, why)
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	if len(names) > maxNamesPerOrder {
		return nil, nil, fmt.Errorf("the request has %d DNS names; ACME CAs issue at most %d names per certificate (Let's Encrypt, ZeroSSL and Google Trust Services alike): split the Certificate into several", len(names), maxNamesPerOrder)
	}
	return csr, names, nil
}

// ensureOrder returns the ACMEOrder of the request, creating it first. It is
// created before the CA is asked for an order, so the CA's order URL has a
// place to be written to at once.
func (s *Signer) ensureOrder(ctx context.Context, cro signer.CertificateRequestObject, iss v1alpha1.ACMEIssuerObject, names []string) (*v1alpha1.ACMEOrder, error) {
	order := &v1alpha1.ACMEOrder{}
	key := client.ObjectKey{Namespace: cro.GetNamespace(), Name: cro.GetName()}
	err := s.client.Get(ctx, key, order)
	if err == nil {
		return order, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading ACMEOrder %s: %w", key, err)
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
			return nil, signer.PendingError{Err: fmt.Errorf("waiting for ACMEOrder %s to appear in the cache", key), RequeueAfter: minPoll}
		}
		return nil, fmt.Errorf("creating ACMEOrder %s: %w", key, err)
	}
	return order, nil
}

func (s *Signer) placeOrder(ctx context.Context, cro signer.CertificateRequestObject, iss v1alpha1.ACMEIssuerObject, acct *account, order *v1alpha1.ACMEOrder) (*acme.Order, error) {
	if o, ok := s.unrecorded.take(order.UID, acct.uri); ok {
		// Placed by an earlier pass whose write of the URL failed.
		return s.recordPlaced(ctx, cro, order, acct, o)
	}
	if order.Status.RequestedAt != nil {
		s.event(cro, corev1.EventTypeWarning, "OrderUnknown", "the request for an order at %s got no recorded answer (the controller stopped or lost the CA's answer); the CA may hold an order nobody uses, which it lets expire; placing a new one", order.Status.RequestedAt.UTC().Format(time.RFC3339))
		countOrder(order, metrics.OrderUnknown)
	}
	// Record the attempt before asking the CA. The write fails when the
	// cache was behind (an order may already be recorded) or the API server
	// is unreachable: either way no order is placed that could not be
	// recorded.
	claim := order.DeepCopy()
	now := metav1.NewTime(s.clock.Now())
	claim.Status.RequestedAt = &now
	claim.Status.Message = "asking the CA for an order for " + strings.Join(order.Spec.DNSNames, ", ")
	claim.SyncReadyCondition()
	if err := s.client.Status().Update(ctx, claim); err != nil {
		if apierrors.IsConflict(err) {
			return nil, signer.PendingError{Err: fmt.Errorf("ACMEOrder %s/%s changed meanwhile; reading it again before placing an order", order.Namespace, order.Name), RequeueAfter: minPoll}
		}
		return nil, fmt.Errorf("recording in ACMEOrder %s/%s that an order is being placed (no order is placed before that is recorded): %w", order.Namespace, order.Name, err)
	}
	*order = *claim

	var opts []acme.OrderOption
	if p := iss.GetSpec().Profile; p != "" {
		opts = append(opts, acme.WithOrderIssuanceProfile(acme.ProfileName(p)))
	}
	octx, cancel := context.WithTimeout(ctx, caRequestTimeout)
	defer cancel()
	o, err := acct.client.AuthorizeOrder(octx, acme.DomainIDs(order.Spec.DNSNames...), opts...)
	if err != nil {
		refused := !mayHaveReachedCA(err)
		err = caOutcome("creating an order for "+strings.Join(order.Spec.DNSNames, ", "), err)
		return nil, s.orderFailed(ctx, cro, order, err, refused)
	}
	return s.recordPlaced(ctx, cro, order, acct, o)
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
	log.FromContext(ctx).Info("ACME order created", "order", o.URI, "names", order.Spec.DNSNames)
	s.event(cro, corev1.EventTypeNormal, "OrderCreated", "%s", msg)
	countOrder(order, metrics.OrderCreated)
	return o, nil
}

// solve publishes a challenge for each pending authorization, asks the CA to
// validate those whose routes are in place, and returns a one-line progress
// report per name. While a validation is young it trusts the order's status
// and asks the CA nothing more; after that it reads the authorization too,
// so the report says which name is done and which one the CA failed.
func (s *Signer) solve(ctx context.Context, cro signer.CertificateRequestObject, acct *account, order *v1alpha1.ACMEOrder, o *acme.Order) (string, error) {
	challenges, err := s.challengesByAuthorization(ctx, order, o.AuthzURLs)
	if err != nil {
		return "", err
	}
	var progress []string
	for _, authzURL := range o.AuthzURLs {
		ch := challenges[authzURL]
		switch {
		case ch != nil && !ch.Status.Presented:
			msg := ch.Spec.DNSName + ": publishing routes"
			if ch.Status.Message != "" {
				msg += " (" + ch.Status.Message + ")"
				// The challenge controller writes a message only once the
				// routes could not be published for a while: a problem,
				// said once more where `cmctl status certificate` lists
				// Events, when the request's message does not show it yet.
				if !showsProgress(cro, msg) {
					s.event(cro, corev1.EventTypeWarning, "NotPresented", "%s: %s", ch.Spec.DNSName, ch.Status.Message)
				}
			}
			progress = append(progress, msg)
			continue
		case ch != nil && ch.Status.State == "":
			if err := s.accept(ctx, cro, acct, ch); err != nil {
				return "", err
			}
			progress = append(progress, ch.Spec.DNSName+": the CA is validating")
			continue
		case ch != nil && ch.Status.State == v1alpha1.ChallengeProcessing && s.validatingFor(ch) < quietValidation:
			progress = append(progress, ch.Spec.DNSName+": the CA is validating")
			continue
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
			progress = append(progress, host+": validated")
			continue
		case acme.StatusPending:
		default:
			// invalid, deactivated, expired: the order turns invalid too,
			// and the next pass reports why.
			detail := fmt.Sprintf("authorization %s", a.Status)
			if chal != nil && chal.Error != nil {
				detail += ": " + chal.Error.Error()
			}
			if ch != nil {
				if err := s.setChallengeState(ctx, ch, v1alpha1.ChallengeInvalid, detail); err != nil {
					return "", err
				}
			}
			progress = append(progress, host+": "+detail)
			continue
		}

		if chal == nil {
			return "", signer.PermanentError{Err: fmt.Errorf("the CA offers no http-01 challenge for %s (it offers %s); this issuer solves HTTP-01 only", host, challengeTypes(a))}
		}
		if ch != nil {
			// Accepted a while ago and still pending at the CA.
			progress = append(progress, host+": the CA is validating"+validatingSince(s.validatingFor(ch)))
			continue
		}
		if _, err := s.ensureChallenge(ctx, cro, acct, order, a, chal); err != nil {
			return "", err
		}
		progress = append(progress, host+": publishing routes")
	}
	return strings.Join(progress, "; "), nil
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
// before its authorization is read as well.
const quietValidation = 2 * time.Second

// validatingFor is how long ago the challenge was accepted; long ago when
// that was not recorded.
func (s *Signer) validatingFor(ch *v1alpha1.ACMEChallenge) time.Duration {
	if ch.Status.AcceptedAt == nil {
		return quietValidation
	}
	return s.clock.Since(ch.Status.AcceptedAt.Time)
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
				return s.setChallengeState(ctx, ch, v1alpha1.ChallengeProcessing, "the CA is validating "+ch.Spec.URL)
			}
		}
		return caOutcome("asking the CA to validate "+host, err)
	}
	if err := s.setChallengeState(ctx, ch, v1alpha1.ChallengeProcessing, "the CA is validating "+ch.Spec.URL); err != nil {
		return err
	}
	metrics.Challenges.WithLabelValues(metrics.ChallengeAccepted).Inc()
	// Logged, not an Event: one per name would double the Events of every
	// issuance, and the ACMEChallenge's status says the same.
	log.FromContext(ctx).Info("asked the CA to validate", "host", host, "url", "http://"+host+"/.well-known/acme-challenge/"+ch.Spec.Token)
	return nil
}

// challengesByAuthorization returns the order's challenges (from the cache)
// by authorization URL. Each is first read by its name, made from the order
// and the name it proves: listing the namespace's challenges copies every
// one in flight, on each pass of each request. Only when that does not find
// one for each of authzURLs (none created yet, or the CA spells a name
// differently) are they listed.
func (s *Signer) challengesByAuthorization(ctx context.Context, order *v1alpha1.ACMEOrder, authzURLs []string) (map[string]*v1alpha1.ACMEChallenge, error) {
	out := map[string]*v1alpha1.ACMEChallenge{}
	add := func(ch *v1alpha1.ACMEChallenge) {
		if ch.Spec.Order == order.Name && ch.DeletionTimestamp == nil {
			out[ch.Spec.AuthorizationURL] = ch
		}
	}
	for _, host := range order.Spec.DNSNames {
		ch := &v1alpha1.ACMEChallenge{}
		key := client.ObjectKey{Namespace: order.Namespace, Name: challengeName(order.Name, host)}
		if err := s.client.Get(ctx, key, ch); apierrors.IsNotFound(err) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("reading ACMEChallenge %s: %w", key, err)
		}
		add(ch)
	}
	if !slices.ContainsFunc(authzURLs, func(u string) bool { return out[u] == nil }) {
		return out, nil
	}
	var list v1alpha1.ACMEChallengeList
	if err := s.client.List(ctx, &list, client.InNamespace(order.Namespace)); err != nil {
		return nil, fmt.Errorf("listing the challenges of ACMEOrder %s/%s: %w", order.Namespace, order.Name, err)
	}
	clear(out)
	for i := range list.Items {
		add(&list.Items[i])
	}
	return out, nil
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

func (s *Signer) ensureChallenge(ctx context.Context, cro signer.CertificateRequestObject, acct *account, order *v1alpha1.ACMEOrder, a *acme.Authorization, chal *acme.Challenge) (*v1alpha1.ACMEChallenge, error) {
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
	issuerSpec, err := s.issuerSolver(ctx, order)
	if err != nil {
		return nil, err
	}
	ch = &v1alpha1.ACMEChallenge{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: key.Namespace,
			Name:      key.Name,
			// Set at creation, so the challenge controller need not add it
			// before it publishes the routes.
			Finalizers: []string{v1alpha1.ChallengeRoutesFinalizer},
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
			Solver:           issuerSpec,
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

// issuerSolver reads the solver settings of the order's issuer.
func (s *Signer) issuerSolver(ctx context.Context, order *v1alpha1.ACMEOrder) (v1alpha1.IstioHTTP01Solver, error) {
	var iss v1alpha1.ACMEIssuerObject
	switch order.Spec.IssuerRef.Kind {
	case "ACMEClusterIssuer":
		iss = &v1alpha1.ACMEClusterIssuer{}
	default:
		iss = &v1alpha1.ACMEIssuer{}
	}
	key := issuerKey(order)
	if err := s.client.Get(ctx, key, iss); err != nil {
		return v1alpha1.IstioHTTP01Solver{}, fmt.Errorf("reading %s %s: %w", order.Spec.IssuerRef.Kind, key, err)
	}
	return iss.GetSpec().Solver.Istio, nil
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
		if state == v1alpha1.ChallengeProcessing && ch.Status.State == "" {
			ch.Status.AcceptedAt = &metav1.Time{Time: s.clock.Now()}
		}
		ch.Status.State = state
		ch.Status.Message = msg
		ch.SyncReadyCondition("")
	}); err != nil {
		return err
	}
	// The CA's verdict only: being validated is a step the status shows,
	// not worth an API request per challenge.
	if changed && (state == v1alpha1.ChallengeValid || state == v1alpha1.ChallengeInvalid) {
		s.challengeEvent(ch, state, msg)
	}
	return nil
}

// challengeEvent records the CA's verdict on a challenge (valid or
// invalid) on the challenge itself, where `kubectl describe acmechallenge`
// shows it; the request gets its own Events.
func (s *Signer) challengeEvent(ch *v1alpha1.ACMEChallenge, state v1alpha1.ChallengeState, msg string) {
	if s.events == nil {
		return
	}
	eventType, reason := corev1.EventTypeNormal, v1alpha1.ChallengeReasonValid
	if state == v1alpha1.ChallengeInvalid {
		eventType, reason = corev1.EventTypeWarning, v1alpha1.ChallengeReasonInvalid
	}
	s.events.Eventf(ch, nil, eventType, reason, "Validate", "%s", msg)
}

func (s *Signer) issued(ctx context.Context, cro signer.CertificateRequestObject, order *v1alpha1.ACMEOrder, o *acme.Order, der [][]byte) (signer.PEMBundle, error) {
	var chain []byte
	for _, c := range der {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	bundle, err := pki.ParseSingleCertificateChainPEM(chain)
	if err != nil {
		return signer.PEMBundle{}, fmt.Errorf("the CA returned an unusable chain for order %s: %w", order.Status.URL, err)
	}
	if err := s.deleteChallenges(ctx, order, func(string) string { return metrics.ChallengeValid }); err != nil {
		return signer.PEMBundle{}, err
	}
	// A retry after the certificate was stored must not count it twice.
	first := order.Status.State != v1alpha1.OrderState(acme.StatusValid)
	o.Status = acme.StatusValid
	if err := s.recordOrder(ctx, order, o, "certificate issued"); err != nil {
		return signer.PEMBundle{}, err
	}
	if first {
		countOrder(order, metrics.OrderValid)
		metrics.TimeToIssue.WithLabelValues(order.Spec.IssuerRef.Kind, issuerLabel(order)).Observe(s.clock.Since(cro.GetCreationTimestamp().Time).Seconds())
	}
	log.FromContext(ctx).Info("certificate issued", "order", order.Status.URL, "names", order.Spec.DNSNames)
	s.event(cro, corev1.EventTypeNormal, "Issued", "certificate for %s issued by order %s", strings.Join(order.Spec.DNSNames, ", "), order.Status.URL)
	return signer.PEMBundle(bundle), nil
}

// orderFailed records a failure on the order; permanent failures also remove
// the challenges. refused says a request for a new order cannot have
// created one (the CA answered, or nothing was sent), so the ACMEOrder no
// longer says an order may exist.
func (s *Signer) orderFailed(ctx context.Context, cro signer.CertificateRequestObject, order *v1alpha1.ACMEOrder, err error, refused bool) error {
	if uerr := s.updateOrderStatus(ctx, order, func(st *v1alpha1.ACMEOrderStatus) {
		st.Message = err.Error()
		if refused {
			st.RequestedAt = nil
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
		for _, c := range a.Challenges {
			if c.Error != nil {
				var ae *acme.Error
				if errors.As(c.Error, &ae) {
					reasons = append(reasons, fmt.Sprintf("%s: %s", a.Identifier.Value, problemText(ae)))
				} else {
					reasons = append(reasons, fmt.Sprintf("%s: %v", a.Identifier.Value, c.Error))
				}
			}
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
		*st = v1alpha1.ACMEOrderStatus{}
	})
}

// deleteChallenges removes the order's challenges; their finalizer removes
// the routes.
//
// With settled, the order has ended at the CA: each challenge the CA was
// asked to validate and whose outcome was not seen is counted with the
// outcome settled gives for its host.
func (s *Signer) deleteChallenges(ctx context.Context, order *v1alpha1.ACMEOrder, settled func(host string) string) error {
	var list v1alpha1.ACMEChallengeList
	if err := s.client.List(ctx, &list, client.InNamespace(order.Namespace)); err != nil {
		return fmt.Errorf("listing the challenges of ACMEOrder %s/%s: %w", order.Namespace, order.Name, err)
	}
	for i := range list.Items {
		ch := &list.Items[i]
		if ch.Spec.Order != order.Name || ch.DeletionTimestamp != nil {
			continue
		}
		if settled != nil && ch.Status.State == v1alpha1.ChallengeProcessing {
			outcome := settled(ch.Spec.DNSName)
			metrics.Challenges.WithLabelValues(outcome).Inc()
			if outcome == metrics.ChallengeValid {
				s.challengeEvent(ch, v1alpha1.ChallengeValid, "validated by the CA")
			} else {
				s.challengeEvent(ch, v1alpha1.ChallengeInvalid, "the CA's validation failed; ACMEOrder "+order.Name+" gives the CA's reason")
			}
		}
		if err := s.client.Delete(ctx, ch); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting ACMEChallenge %s/%s: %w", ch.Namespace, ch.Name, err)
		}
	}
	return nil
}

// pollInterval grows with the request's age: quick while the CA is likely to
// answer in milliseconds, gentle on the CA when it takes long.
func (s *Signer) pollInterval(cro signer.CertificateRequestObject) time.Duration {
	d := s.clock.Since(cro.GetCreationTimestamp().Time) / 10
	return min(max(d, minPoll), maxPoll)
}

func (s *Signer) event(cro signer.CertificateRequestObject, eventType, reason, format string, args ...any) {
	if s.events == nil {
		return
	}
	s.events.Eventf(requestRef(cro), nil, eventType, reason, "Sign", format, args...)
}

func isNotFound(err error) bool {
	var ae *acme.Error
	return errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound
}

func countOrder(order *v1alpha1.ACMEOrder, outcome string) {
	metrics.Orders.WithLabelValues(order.Spec.IssuerRef.Kind, issuerLabel(order), outcome).Inc()
}

// issuerKey is the order's issuer: in the order's namespace unless it is
// an ACMEClusterIssuer.
func issuerKey(order *v1alpha1.ACMEOrder) client.ObjectKey {
	key := client.ObjectKey{Name: order.Spec.IssuerRef.Name}
	if order.Spec.IssuerRef.Kind != "ACMEClusterIssuer" {
		key.Namespace = order.Namespace
	}
	return key
}

// issuerLabel names the order's issuer in metrics: namespace/name for an
// ACMEIssuer, the name for an ACMEClusterIssuer.
func issuerLabel(order *v1alpha1.ACMEOrder) string {
	return strings.TrimPrefix(issuerKey(order).String(), "/")
}

func issuerKind(iss v1alpha1.ACMEIssuerObject) string {
	if _, ok := iss.(*v1alpha1.ACMEClusterIssuer); ok {
		return "ACMEClusterIssuer"
	}
	return "ACMEIssuer"
}

func ownerRef(cro signer.CertificateRequestObject) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion:         cmapi.SchemeGroupVersion.String(),
		Kind:               cmapi.CertificateRequestKind,
		Name:               cro.GetName(),
		UID:                cro.GetUID(),
		Controller:         ptr.To(true),
		BlockOwnerDeletion: ptr.To(true),
	}
}

// requestRef is a CertificateRequest carrying just enough to be the subject
// of an Event: the object issuer-lib hands to Sign is a wrapper that the
// scheme does not know.
func requestRef(cro signer.CertificateRequestObject) *cmapi.CertificateRequest {
	return &cmapi.CertificateRequest{
		TypeMeta: metav1.TypeMeta{APIVersion: cmapi.SchemeGroupVersion.String(), Kind: cmapi.CertificateRequestKind},
		ObjectMeta: metav1.ObjectMeta{
			Namespace:       cro.GetNamespace(),
			Name:            cro.GetName(),
			UID:             cro.GetUID(),
			ResourceVersion: cro.GetResourceVersion(),
		},
	}
}
