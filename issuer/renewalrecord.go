package issuer

import (
	"context"
	"crypto/x509"
	"fmt"
	"slices"

	"github.com/cert-manager/cert-manager/third_party/forked/acme"
	"github.com/cert-manager/issuer-lib/controllers/signer"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/kubeutil"
)

// +kubebuilder:rbac:groups=istio-acme.io,resources=acmerenewals,verbs=get;list;watch;create;update

// certificateOwner is the cert-manager Certificate that owns the request,
// or nil for a request written by hand.
func certificateOwner(cro signer.CertificateRequestObject) *metav1.OwnerReference {
	for _, ref := range cro.GetOwnerReferences() {
		if ref.Kind == "Certificate" && ref.APIVersion == "cert-manager.io/v1" && ptr.Deref(ref.Controller, false) {
			return &ref
		}
	}
	return nil
}

// recordIssued records the certificate just issued on the ACMERenewal of
// the request's Certificate: the renewal controller then reads the CA's
// renewal information for it at once, and the Certificate's next request
// names it as the certificate it replaces. Recording is best effort: the
// certificate is issued either way, and without a record the next renewal
// is placed without replaces and on cert-manager's schedule.
func (s *Signer) recordIssued(ctx context.Context, cro signer.CertificateRequestObject, order *v1alpha1.ACMEOrder, leaf *x509.Certificate) {
	owner := certificateOwner(cro)
	if owner == nil {
		return
	}
	lg := log.FromContext(ctx).WithValues("certificate", owner.Name)
	certID, err := acme.CertificateARIID(leaf)
	if err != nil {
		lg.Info("the issued certificate has no ARI identifier; its renewals follow cert-manager's schedule", "reason", err.Error())
		return
	}
	key := client.ObjectKey{Namespace: cro.GetNamespace(), Name: owner.Name}
	ren := &v1alpha1.ACMERenewal{}
	err = s.client.Get(ctx, key, ren)
	found := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		lg.Error(err, "recording the issued certificate for its renewal", "acmeRenewal", key)
		return
	}
	owner.BlockOwnerDeletion = nil // would need update on certificates/finalizers
	follows := func(r *v1alpha1.ACMERenewal) bool {
		return len(r.OwnerReferences) == 1 && r.OwnerReferences[0].UID == owner.UID && r.Spec.IssuerRef == order.Spec.IssuerRef
	}
	if found && ren.Status.CertID == certID && follows(ren) {
		return // a retry of a request already recorded
	}
	now := metav1.NewTime(s.clock.Now())
	rec := &v1alpha1.ACMERenewal{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, OwnerReferences: []metav1.OwnerReference{*owner}},
		Spec:       v1alpha1.ACMERenewalSpec{Certificate: owner.Name, IssuerRef: order.Spec.IssuerRef},
		Status: v1alpha1.ACMERenewalStatus{
			CertID:     certID,
			Serial:     fmt.Sprintf("%x", leaf.SerialNumber),
			DNSNames:   slices.Clone(leaf.DNSNames),
			NotAfter:   &metav1.Time{Time: leaf.NotAfter},
			AccountURI: order.Status.AccountURI,
			Request:    cro.GetName(),
			NextCheck:  &now,
			Message:    "certificate issued; reading the CA's renewal information",
		},
	}
	if s.checkRenewal != nil {
		// The first reading, in the same write: a CA that already wants
		// an early renewal is heard at once, and the renewal controller
		// finds its next check ahead.
		s.checkRenewal(ctx, rec, now.Time)
	}
	if !found {
		// ACMERenewal has no status subresource: created with its record.
		err = s.client.Create(ctx, rec)
	} else {
		// Also follows a Certificate recreated under the same name, or
		// one that now uses another of our issuers.
		err = kubeutil.Update(ctx, s.client, ren, func(r *v1alpha1.ACMERenewal) {
			r.OwnerReferences = rec.OwnerReferences
			r.Spec = rec.Spec
			r.Status = rec.Status
		})
	}
	if err != nil {
		lg.Error(err, "recording the issued certificate for its renewal", "acmeRenewal", key)
	}
}

// replacesFor is the certificate a new order for the request names as the
// one it replaces, or "": the Certificate's current certificate as the
// controller recorded it at issuance, when the CA offers renewal
// information, the order's account is the one that ordered that
// certificate (a CA accepts a replacement only from it), the names
// overlap, and this request never offered it before.
func (s *Signer) replacesFor(ctx context.Context, cro signer.CertificateRequestObject, order *v1alpha1.ACMEOrder, acct *account) string {
	owner := certificateOwner(cro)
	if owner == nil || order.Status.Replaces != "" {
		return ""
	}
	ren := &v1alpha1.ACMERenewal{}
	if err := s.client.Get(ctx, client.ObjectKey{Namespace: cro.GetNamespace(), Name: owner.Name}, ren); err != nil {
		return ""
	}
	st := ren.Status
	if st.CertID == "" || st.AccountURI != acct.uri || len(ren.OwnerReferences) != 1 || ren.OwnerReferences[0].UID != owner.UID {
		return ""
	}
	if !slices.ContainsFunc(st.DNSNames, func(n string) bool { return slices.Contains(order.Spec.DNSNames, n) }) {
		return ""
	}
	dir, err := acct.client.Discover(ctx)
	if err != nil || dir.RenewalInfo == "" {
		return ""
	}
	return st.CertID
}
