package issuer

import (
	"context"
	"fmt"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/cert-manager/issuer-lib/controllers/signer"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/metrics"
)

// refusedPoll is how often a refused request is decided again without a
// change of Gateways or grants to wake it (a namespace's labels, which a
// grant's selector reads, are not watched).
const refusedPoll = 30 * time.Second

// authorized applies the tenancy rule to the request's names before
// anything reaches the CA. A refusal leaves the request pending with the
// reason until refusalGrace after its creation, so that a Certificate
// applied a moment before the Gateway that admits it still issues; then
// the request fails, and cert-manager retries on its own backoff with a
// new request, which is judged again.
func (s *Signer) authorized(ctx context.Context, cro signer.CertificateRequestObject, iss v1alpha1.ACMEIssuerObject, names []string) error {
	if err := s.confined(iss); err != nil {
		return signer.IssuerError{Err: err}
	}
	if s.authorize == nil {
		return nil
	}
	key := types.NamespacedName{Namespace: cro.GetNamespace(), Name: cro.GetName()}
	requester, unbelieved, err := s.requesterOf(ctx, cro)
	if err != nil {
		return err
	}
	why, err := s.authorize(ctx, requester, iss.GetSpec().Solver.Istio, issuerKind(iss)+" "+iss.GetName()+" spec.solver.istio.gateways", names)
	if err != nil {
		return err
	}
	if why != "" && unbelieved != "" {
		why += " (judged for the request's own namespace: " + unbelieved + ")"
	}
	if why == "" {
		s.refused.Remove(key)
		return nil
	}
	s.refused.Add(key)
	if !readyMessageContains(cro, why) {
		log.FromContext(ctx).Info("the tenancy rule refuses the request's names", "reason", why)
		s.event(cro, corev1.EventTypeWarning, "HostNotAllowed", "%s", why)
		source := metrics.SourceIssuer
		if requester != cro.GetNamespace() {
			source = metrics.SourceShim
		}
		metrics.HostsNotAllowed.WithLabelValues(source).Inc()
	}
	deadline := cro.GetCreationTimestamp().Add(s.refusalGrace)
	if !s.clock.Now().Before(deadline) {
		s.refused.Remove(key)
		return signer.PermanentError{Err: fmt.Errorf("%s; no order was placed, and the request failed %s after its creation (--max-retry-duration); cert-manager retries with a new request on its backoff", why, s.refusalGrace)}
	}
	return signer.PendingError{Err: fmt.Errorf("%s; no order is placed until then: the request is decided again whenever Gateways or HostnameGrants change, and fails at %s if still refused", why, deadline.UTC().Format(time.RFC3339)), RequeueAfter: refusedPoll}
}

// readyMessageContains reports whether the request's Ready condition
// already says text, so a refusal is announced once.
func readyMessageContains(cro signer.CertificateRequestObject, text string) bool {
	for _, c := range cro.GetConditions() {
		if c.Type == string(cmapi.CertificateRequestConditionReady) {
			return strings.Contains(c.Message, text)
		}
	}
	return false
}

// requesterOf is the namespace the request asks for: its own, or the
// Gateway's for a Certificate of the Gateway shim in the gateway pods'
// namespace (checked, never taken on trust).
func (s *Signer) requesterOf(ctx context.Context, cro signer.CertificateRequestObject) (requester, unbelieved string, err error) {
	if s.requester == nil {
		return cro.GetNamespace(), "", nil
	}
	return s.requester(ctx, cro.GetNamespace(), cro.GetOwnerReferences())
}
