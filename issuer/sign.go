package issuer

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cert-manager/cert-manager/pkg/util/pki"
	"github.com/cert-manager/cert-manager/third_party/forked/acme"
	issuerapi "github.com/cert-manager/issuer-lib/api/v1alpha1"
	"github.com/cert-manager/issuer-lib/controllers/signer"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
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
	// accepted holds when the CA was asked to validate each challenge.
	accepted *kubeutil.TimedMap[types.UID, struct{}]
	// checkRenewal, set by the renewal controller, reads the CA's renewal
	// information for a certificate just recorded.
	checkRenewal func(context.Context, *v1alpha1.ACMERenewal, time.Time)
	// authorize and refusalGrace: see Options.
	authorize        AuthorizeFunc
	refusalGrace     time.Duration
	namespacedPolicy func(v1alpha1.IstioHTTP01Solver) string
	requester        solver.RequesterFunc
	presentations    *solver.Presentations
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
	// Presentations, when set, tell a challenge the challenge controller
	// of this process presented before its status says so.
	Presentations *solver.Presentations
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
		presentations:    o.Presentations,
		accepted:         newAcceptedChallenges(),
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
	csr, names, err := parseCSR(details.CSR, iss.GetSpec().Profile)
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

	order, created, err := s.ensureOrder(ctx, cro, iss, names)
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
		if o, err = s.placeOrder(ctx, cro, iss, acct, order, created); err != nil {
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
	} else if o.URI == "" {
		// A read of an order carries no Location (Pebble's), and the
		// messages below name the order.
		o.URI = order.Status.URL
	}
	if (o.Status == acme.StatusPending || o.Status == acme.StatusReady) && !o.Expires.IsZero() && !s.clock.Now().Before(o.Expires) {
		return signer.PEMBundle{}, s.replaceExpired(ctx, cro, order, fmt.Sprintf("order %s expired at %s, past the CA's order lifetime", o.URI, o.Expires.UTC().Format(time.RFC3339)))
	}
	pollIn := s.pollInterval(cro)

	switch o.Status {
	case acme.StatusPending:
		progress, err := s.solve(ctx, cro, iss, acct, order, o)
		if errors.As(err, &signer.PermanentError{}) {
			// The order cannot succeed: its challenges go, as when the
			// CA calls the order invalid.
			return signer.PEMBundle{}, s.orderFailed(ctx, cro, order, err, false)
		}
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
		if why := s.expiredOnly(ctx, acct, o); why != "" {
			return signer.PEMBundle{}, s.replaceExpired(ctx, cro, order, why)
		}
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
	if leaf, err := x509.ParseCertificate(der[0]); err == nil {
		s.recordIssued(ctx, cro, order, leaf)
	}
	if first {
		countOrder(order, metrics.OrderValid)
		metrics.TimeToIssue.WithLabelValues(order.Spec.IssuerRef.Kind, issuerLabel(order)).Observe(s.clock.Since(cro.GetCreationTimestamp().Time).Seconds())
	}
	log.FromContext(ctx).Info("certificate issued", "order", order.Status.URL, "names", order.Spec.DNSNames)
	s.event(cro, corev1.EventTypeNormal, "Issued", "certificate for %s issued by order %s", strings.Join(order.Spec.DNSNames, ", "), order.Status.URL)
	return signer.PEMBundle(bundle), nil
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
