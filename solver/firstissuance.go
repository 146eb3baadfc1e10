package solver

import (
	"context"
	"fmt"
	"slices"

	cmacme "github.com/cert-manager/cert-manager/pkg/apis/acme/v1"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/metrics"
)

// The first certificate behind a user's HTTPS server for exactly the host,
// whose credential Secret is the one the request's Certificate fills: no
// server of ours can take the host from that server, and the server cannot
// answer the CA until its Secret exists. cert-manager's own remedy is its
// temporary certificate: with cert-manager.io/issue-temporary-certificate
// on the Certificate, it stores a certificate signed by a throwaway CA in
// the Secret while the request is pending, and only when the Secret holds
// no certificate with its key, so a real certificate is never replaced.
// The controller sets that annotation on the Certificate for the open
// challenge and removes it when the challenge ends; the user's Gateway and
// Secret are never touched by it, and renewals, which find the Secret,
// go through the user's server as it is.

// +kubebuilder:rbac:groups=cert-manager.io,resources=certificates,verbs=get;patch,namespace=temporary-https
// +kubebuilder:rbac:groups=acme.cert-manager.io,resources=orders,verbs=get,namespace=temporary-https

// temporaryCertificateManager owns the annotation, so that removing it
// leaves one set by anybody else.
const temporaryCertificateManager = "istio-acme-issuer-first-issuance"

// firstIssuance decides a refusal that only a missing credential Secret
// causes. When the Secret is the one the challenge's Certificate fills, it
// asks cert-manager for a temporary certificate there and returns what the
// challenge waits for; otherwise it returns nil and the refusal stands.
func (r *ChallengeReconciler) firstIssuance(ctx context.Context, ch *v1alpha1.ACMEChallenge, refusal *Refusal) (*notPresented, error) {
	sec := refusal.MissingCredential
	waiting := func(crt client.ObjectKey) *notPresented {
		return &notPresented{metrics.NotPresentedTemporaryCertificate, fmt.Sprintf(
			"%s; Secret %s/%s is the one Certificate %s fills, so cert-manager was asked to store a temporary certificate there first (%s: \"true\" on the Certificate, until this challenge ends), after which the CA is answered through that server; waiting for the Secret",
			refusal.Situation, sec.Namespace, sec.Name, crt, cmapi.IssueTemporaryCertificateAnnotation)}
	}
	if ref := ch.Status.TemporaryCertificateFor; ref != nil && ref.Namespace == sec.Namespace {
		// Applied already (it is recorded only then): nothing to read
		// again on each pass until the Secret exists.
		return waiting(client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}), nil
	}
	crt, why, err := r.requestCertificate(ctx, ch)
	if err != nil {
		return nil, err
	}
	logger := log.FromContext(ctx)
	if crt == nil {
		logger.V(1).Info("no temporary certificate for the missing credential", "secret", sec, "reason", why)
		return nil, nil
	}
	key := client.ObjectKeyFromObject(crt)
	if crt.Namespace != sec.Namespace || crt.Spec.SecretName != sec.Name {
		logger.V(1).Info("no temporary certificate for the missing credential: the request's Certificate fills another Secret", "secret", sec, "certificate", key, "secretName", crt.Spec.SecretName)
		return nil, nil
	}
	switch v, set := crt.Annotations[cmapi.IssueTemporaryCertificateAnnotation]; {
	case set && v == "true" && !appliedByUs(crt):
		// Set by its author: theirs to keep.
		return waiting(key), nil
	case set && v != "true":
		return &notPresented{metrics.NotPresentedHTTPSRedirect, fmt.Sprintf(
			"%s; Certificate %s fills that Secret, but sets %s: %q, so cert-manager stores no temporary certificate there for the server to answer the CA with: remove the annotation or set it to \"true\", or turn httpsRedirect off until the first certificate is issued",
			refusal.Situation, key, cmapi.IssueTemporaryCertificateAnnotation, v)}, nil
	case !set:
		// The finalizer removes the annotation when the challenge ends.
		if err := r.addFinalizer(ctx, ch); err != nil {
			return nil, err
		}
		if err := r.applyTemporaryCertificate(ctx, crt, true); err != nil {
			return nil, fmt.Errorf("asking cert-manager for a temporary certificate on Certificate %s: %w", key, err)
		}
		r.eventf(ch, corev1.EventTypeNormal, "TemporaryCertificate", "asked cert-manager to store a temporary certificate in Secret %s/%s (Certificate %s), which the HTTPS server the CA is redirected to serves", sec.Namespace, sec.Name, key)
	}
	// Recorded once applied (also when a pass ended between the two), so
	// the challenge removes it when it ends.
	ref := &v1alpha1.ObjectReference{APIVersion: cmapi.SchemeGroupVersion.String(), Kind: cmapi.CertificateKind, Namespace: crt.Namespace, Name: crt.Name}
	if err := r.updateStatus(ctx, ch, "", func(st *v1alpha1.ACMEChallengeStatus) { st.TemporaryCertificateFor = ref }); err != nil {
		return nil, err
	}
	return waiting(key), nil
}

// appliedByUs reports whether the annotation's field manager is among the
// Certificate's: the controller applied it.
func appliedByUs(crt *cmapi.Certificate) bool {
	return slices.ContainsFunc(crt.ManagedFields, func(f metav1.ManagedFieldsEntry) bool { return f.Manager == temporaryCertificateManager })
}

// releaseTemporaryCertificate removes the annotation the challenge set, if
// no one else set it too.
func (r *ChallengeReconciler) releaseTemporaryCertificate(ctx context.Context, ch *v1alpha1.ACMEChallenge) error {
	ref := ch.Status.TemporaryCertificateFor
	if ref == nil {
		return nil
	}
	crt := &cmapi.Certificate{}
	if err := r.apiReader().Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, crt); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !appliedByUs(crt) {
		return nil
	}
	err := r.applyTemporaryCertificate(ctx, crt, false)
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone, or replaced by another Certificate of that name
	}
	return err
}

// applyTemporaryCertificate applies, as its own field manager, the
// annotation (set) or nothing (unset) to the Certificate. The object's UID
// is a precondition: the apply never creates a Certificate.
func (r *ChallengeReconciler) applyTemporaryCertificate(ctx context.Context, crt *cmapi.Certificate, set bool) error {
	obj := &unstructured.Unstructured{}
	obj.SetGroupVersionKind(cmapi.SchemeGroupVersion.WithKind(cmapi.CertificateKind))
	obj.SetNamespace(crt.Namespace)
	obj.SetName(crt.Name)
	obj.SetUID(crt.UID)
	if set {
		obj.SetAnnotations(map[string]string{cmapi.IssueTemporaryCertificateAnnotation: "true"})
	}
	return r.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner(temporaryCertificateManager))
}

// requestCertificate is the Certificate whose request the challenge is for
// (through its ACMEOrder, or the cert-manager Challenge and Order it
// mirrors), when a Certificate controls that request; nil, with why, for
// requests written by hand.
func (r *ChallengeReconciler) requestCertificate(ctx context.Context, ch *v1alpha1.ACMEChallenge) (*cmapi.Certificate, string, error) {
	request, why, err := r.requestName(ctx, ch)
	if request == "" {
		return nil, why, err
	}
	cr := &cmapi.CertificateRequest{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: ch.Namespace, Name: request}, cr); err != nil {
		return nil, "reading its CertificateRequest: " + err.Error(), client.IgnoreNotFound(err)
	}
	owner := metav1.GetControllerOf(cr)
	if owner == nil || owner.Kind != cmapi.CertificateKind || owner.APIVersion != cmapi.SchemeGroupVersion.String() {
		return nil, "no Certificate controls its CertificateRequest", nil
	}
	crt := &cmapi.Certificate{}
	if err := r.apiReader().Get(ctx, client.ObjectKey{Namespace: cr.Namespace, Name: owner.Name}, crt); err != nil {
		if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
			// Forbidden: not in a namespace the controller may read
			// Certificates in, which are the gateway pods' namespaces.
			return nil, "reading its Certificate: " + err.Error(), nil
		}
		return nil, "", fmt.Errorf("reading Certificate %s/%s: %w", cr.Namespace, owner.Name, err)
	}
	if crt.UID != owner.UID {
		return nil, "its Certificate was replaced", nil
	}
	return crt, "", nil
}

// requestName is the name of the CertificateRequest the challenge is for,
// in its namespace, or "" with why.
func (r *ChallengeReconciler) requestName(ctx context.Context, ch *v1alpha1.ACMEChallenge) (string, string, error) {
	if ch.Spec.Order != "" {
		order := &v1alpha1.ACMEOrder{}
		if err := r.Client.Get(ctx, client.ObjectKey{Namespace: ch.Namespace, Name: ch.Spec.Order}, order); err != nil {
			return "", "reading its ACMEOrder: " + err.Error(), client.IgnoreNotFound(err)
		}
		return order.Spec.Request, "", nil
	}
	mirrored := certManagerChallengeOf(ch)
	if mirrored == nil {
		return "", "no order of ours and no cert-manager Challenge owns it", nil
	}
	cmch := &cmacme.Challenge{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: ch.Namespace, Name: mirrored.Name}, cmch); err != nil {
		return "", "reading its cert-manager Challenge: " + err.Error(), client.IgnoreNotFound(err)
	}
	ref := metav1.GetControllerOf(cmch)
	if ref == nil || ref.Kind != cmacme.OrderKind {
		return "", "no cert-manager Order controls its Challenge", nil
	}
	order := &cmacme.Order{}
	if err := r.apiReader().Get(ctx, client.ObjectKey{Namespace: ch.Namespace, Name: ref.Name}, order); err != nil {
		if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
			// Forbidden: Orders are read only in the gateway pods'
			// namespaces, where the Secrets these servers serve live.
			return "", "reading its cert-manager Order: " + err.Error(), nil
		}
		return "", "", fmt.Errorf("reading Order %s/%s: %w", ch.Namespace, ref.Name, err)
	}
	cr := metav1.GetControllerOf(order)
	if cr == nil || cr.Kind != cmapi.CertificateRequestKind {
		return "", "no CertificateRequest controls its cert-manager Order", nil
	}
	return cr.Name, "", nil
}

// apiReader reads Certificates and cert-manager Orders from the API
// server: the controller caches neither, and these reads happen once per
// challenge that needs a temporary certificate.
func (r *ChallengeReconciler) apiReader() client.Reader {
	if r.APIReader != nil {
		return r.APIReader
	}
	return r.Client
}
