// Package metrics defines the controller's Prometheus metrics, served on its
// metrics endpoint with controller-runtime's own.
package metrics

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Order outcomes.
const (
	OrderCreated = "created"
	OrderValid   = "valid"   // the certificate was issued
	OrderInvalid = "invalid" // the CA refused it, or it failed for good
	OrderReset   = "reset"   // replaced by a new order (gone at the CA, or another account)
	// OrderUnknown: an earlier request for an order got no recorded answer
	// (a crash, a lost connection); the CA may hold an order nobody uses.
	OrderUnknown = "unknown"
)

// Outcomes of a renewal order that named the certificate it replaces.
const (
	ReplacesAccepted = "accepted"
	ReplacesRefused  = "refused" // ordered again without replaces
)

// Outcomes of reading the CA's renewal information, and of acting on it.
const (
	RenewalInfoRead        = "read"
	RenewalInfoError       = "error"
	RenewalInfoUnsupported = "unsupported" // the CA offers no renewalInfo
)

// Front doors of a request, for HostsNotAllowed.
const (
	SourceIssuer = "issuer"
	SourceSolver = "solver"
	SourceShim   = "shim"
)

// Challenge outcomes.
const (
	ChallengeAccepted = "accepted" // the CA was asked to validate
	ChallengeValid    = "valid"
	ChallengeInvalid  = "invalid"
)

// Reasons a challenge could not be presented (its routes published and
// self-checked); each is counted once per distinct message reported.
const (
	NotPresentedGatewayDiscovery = "gateway_discovery"
	NotPresentedHTTPSRedirect    = "https_redirect"
	NotPresentedShadowed         = "shadowed"
	NotPresentedUsersTraffic     = "users_traffic"
	// The servers that build the host's virtual host do not admit
	// VirtualServices of the requester's namespace.
	NotPresentedGatewayNamespace = "gateway_namespace"
	NotPresentedPublish          = "publish"
	// The tenancy rule refuses the host to the challenge's namespace.
	NotPresentedHostNotAllowed = "host_not_allowed"
	// The challenge belongs to no ACMEOrder of ours and mirrors no
	// cert-manager Challenge of our IngressClasses (written by hand).
	NotPresentedNotOurs = "not_ours"
	// A namespaced issuer's settings are not ones the platform allows.
	NotPresentedIssuerSettings = "issuer_settings"
	NotPresentedSelfCheck      = "self_check"
	NotPresentedSelfCheckDNS   = "self_check_dns"
	// The HTTPS server the CA is redirected to waits for the temporary
	// certificate cert-manager was asked to store in its Secret.
	NotPresentedTemporaryCertificate = "temporary_certificate"
)

var (
	// BuildInfo is always 1, labelled with the running version, so that
	// dashboards and alerts can tell which release a replica runs.
	BuildInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "istio_acme_build_info",
		Help: "Always 1; labelled with the controller's version and the Go version it was built with.",
	}, []string{"version", "goversion"})

	// Orders counts ACME orders by issuer and outcome.
	Orders = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "istio_acme_orders_total",
		Help: "ACME orders by issuer and outcome: created, valid (certificate issued), invalid (refused by the CA or failed for good), reset (replaced by a new order), unknown (an earlier request's answer was lost; the CA may hold an unused order).",
	}, []string{"issuer_kind", "issuer", "outcome"})

	// Challenges counts HTTP-01 challenges by outcome at the CA.
	Challenges = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "istio_acme_challenges_total",
		Help: "HTTP-01 challenges by outcome: accepted (the CA was asked to validate), valid, invalid (the CA's validation failed).",
	}, []string{"outcome"})

	// NotPresented counts the problems that kept a challenge's routes from
	// being published or self-checked, before the CA was asked.
	NotPresented = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "istio_acme_challenge_not_presented_total",
		Help: "Problems reported on challenges before the CA was asked, by reason: gateway_discovery, https_redirect, shadowed, users_traffic, gateway_namespace, host_not_allowed, not_ours, issuer_settings, publish, self_check, self_check_dns.",
	}, []string{"reason"})

	// HostsNotAllowed counts the requests refused by the tenancy rule
	// before any order, by front door (issuer: our issuers' requests,
	// solver: cert-manager Challenges of our IngressClasses, shim: the
	// Gateway shim's Certificates); each distinct refusal once.
	HostsNotAllowed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "istio_acme_hosts_not_allowed_total",
		Help: "Requests refused before any order because their namespace may not get a name (no Gateway server admits it there and no HostnameGrant grants it), by front door: issuer, solver, shim.",
	}, []string{"source"})

	// CAErrors counts errors from the ACME server by ACME problem type
	// (rateLimited, badNonce, serverInternal, ...) or "transport".
	CAErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "istio_acme_ca_errors_total",
		Help: "Errors answered by the ACME server, by ACME problem type without its URN prefix, or transport for network and TLS failures.",
	}, []string{"type"})

	// Replaces counts renewal orders that named the certificate they
	// replace, by whether the CA accepted it.
	Replaces = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "istio_acme_replaces_total",
		Help: "Renewal orders that named the certificate they replace (RFC 9773), by issuer and outcome: accepted, refused (ordered again without it, counting against the CA's rate limits).",
	}, []string{"issuer_kind", "issuer", "outcome"})

	// RenewalInfo counts readings of the CA's renewal information.
	RenewalInfo = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "istio_acme_renewal_info_total",
		Help: "Readings of the CA's renewal information (RFC 9773) by issuer and outcome: read, error, unsupported (the CA offers none; cert-manager's schedule applies).",
	}, []string{"issuer_kind", "issuer", "outcome"})

	// EarlyRenewals counts renewals the controller asked cert-manager for
	// because the CA's window opened before cert-manager's renewal time.
	EarlyRenewals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "istio_acme_early_renewals_total",
		Help: "Renewals asked of cert-manager because the CA's renewal window (RFC 9773) came before the Certificate's own renewal time, by issuer.",
	}, []string{"issuer_kind", "issuer"})

	// TimeToIssue observes the time from a CertificateRequest's creation to
	// its certificate.
	TimeToIssue = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "istio_acme_time_to_issue_seconds",
		Help:    "Time from a CertificateRequest's creation to its certificate being issued.",
		Buckets: []float64{1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600},
	}, []string{"issuer_kind", "issuer"})
)

// Collectors are the controller's own metrics, served next to
// controller-runtime's.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{BuildInfo, Orders, Challenges, NotPresented, HostsNotAllowed, CAErrors, Replaces, RenewalInfo, EarlyRenewals, TimeToIssue}
}

func init() {
	ctrlmetrics.Registry.MustRegister(Collectors()...)
}

// SetBuildInfo records the running version in BuildInfo.
func SetBuildInfo(version, goVersion string) {
	BuildInfo.Reset()
	BuildInfo.WithLabelValues(version, goVersion).Set(1)
}

// ProblemType is the label value for an ACME problem type URN.
func ProblemType(urn string) string {
	if t := strings.TrimPrefix(urn, "urn:ietf:params:acme:error:"); t != "" {
		return t
	}
	return "unknown"
}
