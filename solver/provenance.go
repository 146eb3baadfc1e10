package solver

import (
	"context"
	"fmt"
	"strings"

	apiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmacme "github.com/cert-manager/cert-manager/pkg/apis/acme/v1"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

// Provenance tells the ACMEChallenges this controller answers from ones
// someone wrote by hand. Whoever may write an ACMEChallenge could otherwise
// have a route published and any text served on any host. A challenge is
// ours when its controller is either
//   - an ACMEOrder (same UID) that lists the challenge's name and is itself
//     owned by its CertificateRequest (same UID), or
//   - a cert-manager Challenge (same UID) for the same name, token and key,
//     whose http01 solver names an IngressClass of ours, which the challenge
//     records.
//
// Everything else is reported and ignored: no route, no answer from the
// token server. Even a forged chain of objects gains nothing across
// namespaces: the tenancy rule judges the challenge's own namespace.
type Provenance struct {
	// Client reads ACMEOrders, CertificateRequests, issuers, cert-manager
	// Challenges and IngressClasses (ProvenanceReads), from the cache.
	Client client.Reader
	// Requester, when set, tells the namespace a request asks for from
	// its namespace and owners (shim.Requester.Of); a challenge whose
	// spec.requesterNamespace differs from its own namespace is ours only
	// when it agrees.
	Requester RequesterFunc
}

// RequesterFunc tells the namespace a request asks for from its namespace
// and owners (the Gateway's, for a Certificate of the Gateway shim); why
// says why a claim was not believed. The signer and Provenance share it.
type RequesterFunc func(ctx context.Context, namespace string, owners []metav1.OwnerReference) (requester, why string, err error)

// Check returns why the challenge is not one of ours, or "".
func (p *Provenance) Check(ctx context.Context, ch *v1alpha1.ACMEChallenge) (string, error) {
	owner := metav1.GetControllerOf(ch)
	switch {
	case owner == nil:
		return "it has no controller: an ACMEChallenge is answered only for an ACMEOrder of this controller or a cert-manager Challenge of one of its IngressClasses", nil
	case owner.APIVersion == v1alpha1.GroupVersion.String() && owner.Kind == "ACMEOrder":
		return p.checkOrder(ctx, ch, owner)
	case owner.APIVersion == cmacme.SchemeGroupVersion.String() && owner.Kind == cmacme.ChallengeKind:
		return p.checkCertManagerChallenge(ctx, ch, owner)
	}
	return fmt.Sprintf("its controller is %s %s, not an ACMEOrder or a cert-manager Challenge", owner.Kind, owner.Name), nil
}

func (p *Provenance) checkOrder(ctx context.Context, ch *v1alpha1.ACMEChallenge, owner *metav1.OwnerReference) (string, error) {
	order := &v1alpha1.ACMEOrder{}
	if err := p.Client.Get(ctx, client.ObjectKey{Namespace: ch.Namespace, Name: owner.Name}, order); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Sprintf("its ACMEOrder %s/%s does not exist", ch.Namespace, owner.Name), nil
		}
		return "", fmt.Errorf("reading ACMEOrder %s/%s: %w", ch.Namespace, owner.Name, err)
	}
	switch {
	case order.UID != owner.UID:
		return fmt.Sprintf("ACMEOrder %s/%s is not the one that owns it (another UID)", ch.Namespace, owner.Name), nil
	case ch.Spec.Order != order.Name:
		return fmt.Sprintf("its spec.order %q is not its owner %s", ch.Spec.Order, order.Name), nil
	case !containsFold(order.Spec.DNSNames, ch.Spec.DNSName):
		return fmt.Sprintf("its ACMEOrder %s/%s does not list %s", ch.Namespace, order.Name, ch.Spec.DNSName), nil
	}
	reqOwner := metav1.GetControllerOf(order)
	if reqOwner == nil || reqOwner.Kind != cmapi.CertificateRequestKind || reqOwner.APIVersion != cmapi.SchemeGroupVersion.String() {
		return fmt.Sprintf("its ACMEOrder %s/%s is not owned by a CertificateRequest", ch.Namespace, order.Name), nil
	}
	cr := &cmapi.CertificateRequest{}
	if err := p.Client.Get(ctx, client.ObjectKey{Namespace: ch.Namespace, Name: reqOwner.Name}, cr); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Sprintf("the CertificateRequest %s/%s of its ACMEOrder does not exist", ch.Namespace, reqOwner.Name), nil
		}
		return "", fmt.Errorf("reading CertificateRequest %s/%s: %w", ch.Namespace, reqOwner.Name, err)
	}
	if cr.UID != reqOwner.UID || cr.Spec.IssuerRef.Group != v1alpha1.GroupVersion.Group ||
		cr.Spec.IssuerRef.Kind != order.Spec.IssuerRef.Kind || cr.Spec.IssuerRef.Name != order.Spec.IssuerRef.Name {
		return fmt.Sprintf("CertificateRequest %s/%s is not the one its ACMEOrder was placed for, or not for its issuer", ch.Namespace, cr.Name), nil
	}
	// A request nobody approved (or one denied, by approver-policy say)
	// is never signed, so no order of ours is placed for it.
	if !apiutil.CertificateRequestIsApproved(cr) || apiutil.CertificateRequestIsDenied(cr) {
		return fmt.Sprintf("CertificateRequest %s/%s is not approved", ch.Namespace, cr.Name), nil
	}
	// The routes are built from the challenge's settings: they must be its
	// issuer's, or whoever wrote the challenge chooses the gateway pods and
	// the Service the token path is sent to.
	if why, err := p.issuerSettingsMatch(ctx, ch, order); err != nil || why != "" {
		return why, err
	}
	if claim := ch.Spec.RequesterNamespace; claim != "" && claim != ch.Namespace {
		if p.Requester == nil {
			return fmt.Sprintf("its spec.requesterNamespace %s cannot be checked", claim), nil
		}
		got, why, err := p.Requester(ctx, cr.Namespace, cr.OwnerReferences)
		if err != nil {
			return "", err
		}
		if got != claim {
			if why != "" {
				why = ": " + why
			}
			return fmt.Sprintf("its spec.requesterNamespace %s is not the namespace its CertificateRequest %s/%s asks for (%s)%s", claim, cr.Namespace, cr.Name, got, why), nil
		}
	}
	return "", nil
}

func (p *Provenance) checkCertManagerChallenge(ctx context.Context, ch *v1alpha1.ACMEChallenge, owner *metav1.OwnerReference) (string, error) {
	cm := &cmacme.Challenge{}
	if err := p.Client.Get(ctx, client.ObjectKey{Namespace: ch.Namespace, Name: owner.Name}, cm); err != nil {
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			return fmt.Sprintf("its cert-manager Challenge %s/%s does not exist", ch.Namespace, owner.Name), nil
		}
		return "", fmt.Errorf("reading cert-manager Challenge %s/%s: %w", ch.Namespace, owner.Name, err)
	}
	switch {
	case cm.UID != owner.UID:
		return fmt.Sprintf("cert-manager Challenge %s/%s is not the one that owns it (another UID)", ch.Namespace, cm.Name), nil
	case !strings.EqualFold(cm.Spec.DNSName, ch.Spec.DNSName) || cm.Spec.Token != ch.Spec.Token || cm.Spec.Key != ch.Spec.Key:
		return fmt.Sprintf("its name, token or key differ from those of cert-manager Challenge %s/%s", ch.Namespace, cm.Name), nil
	case ch.Spec.RequesterNamespace != "" && ch.Spec.RequesterNamespace != ch.Namespace:
		return fmt.Sprintf("its spec.requesterNamespace %s is not its own namespace, which a cert-manager Challenge's is", ch.Spec.RequesterNamespace), nil
	case ch.Spec.IngressClass == "" || ingressClassOf(cm) != ch.Spec.IngressClass:
		return fmt.Sprintf("cert-manager Challenge %s/%s does not name IngressClass %q", ch.Namespace, cm.Name, ch.Spec.IngressClass), nil
	}
	class := &networkingv1.IngressClass{}
	if err := p.Client.Get(ctx, client.ObjectKey{Name: ch.Spec.IngressClass}, class); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Sprintf("IngressClass %s does not exist", ch.Spec.IngressClass), nil
		}
		return "", fmt.Errorf("reading IngressClass %s: %w", ch.Spec.IngressClass, err)
	}
	if class.Spec.Controller != v1alpha1.SolverIngressController {
		return fmt.Sprintf("IngressClass %s is not one of ours (spec.controller %s)", class.Name, class.Spec.Controller), nil
	}
	return "", nil
}

// issuerSettingsMatch says why the challenge's routing settings are not its
// order's issuer's (spec.solver.istio, as the signer copies them), or "".
// An issuer changed while a challenge is open therefore stops its routes.
func (p *Provenance) issuerSettingsMatch(ctx context.Context, ch *v1alpha1.ACMEChallenge, order *v1alpha1.ACMEOrder) (string, error) {
	var iss v1alpha1.ACMEIssuerObject = &v1alpha1.ACMEIssuer{}
	key := client.ObjectKey{Namespace: order.Namespace, Name: order.Spec.IssuerRef.Name}
	if order.Spec.IssuerRef.Kind == "ACMEClusterIssuer" {
		iss, key.Namespace = &v1alpha1.ACMEClusterIssuer{}, ""
	}
	name := order.Spec.IssuerRef.Kind + " " + strings.TrimPrefix(key.String(), "/")
	if err := p.Client.Get(ctx, key, iss); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Sprintf("its issuer %s does not exist", name), nil
		}
		return "", fmt.Errorf("reading %s: %w", name, err)
	}
	if !equality.Semantic.DeepEqual(ch.Spec.Solver, iss.GetSpec().Solver.Istio) {
		return fmt.Sprintf("its spec.solver is not the spec.solver.istio of its issuer %s", name), nil
	}
	return "", nil
}

func containsFold(list []string, s string) bool {
	s = strings.TrimSuffix(s, ".")
	for _, v := range list {
		if strings.EqualFold(strings.TrimSuffix(v, "."), s) {
			return true
		}
	}
	return false
}

// Proven reports whether the challenge is ours, for the token server; an
// error is a check that could not be made (the token server says 503).
func (p *Provenance) Proven(ctx context.Context, ch *v1alpha1.ACMEChallenge) (bool, error) {
	why, err := p.Check(ctx, ch)
	return err == nil && why == "", err
}

// ProvenanceReads returns the kinds Check reads from its Client, for
// NewTokenPathReader: the token server checks every challenge it answers.
func ProvenanceReads() []client.Object {
	return []client.Object{
		&v1alpha1.ACMEOrder{}, &cmapi.CertificateRequest{},
		&v1alpha1.ACMEIssuer{}, &v1alpha1.ACMEClusterIssuer{},
		&cmacme.Challenge{}, &networkingv1.IngressClass{},
	}
}
