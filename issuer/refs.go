package issuer

import (
	"strings"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/cert-manager/issuer-lib/controllers/signer"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

// issuerKey is the order's issuer: in the order's namespace unless it is
// an ACMEClusterIssuer.
func issuerKey(order *v1alpha1.ACMEOrder) client.ObjectKey {
	return issuerKeyOf(order.Namespace, order.Spec.IssuerRef)
}

// issuerKeyOf is the issuer ref names from an object in namespace.
func issuerKeyOf(namespace string, ref v1alpha1.IssuerReference) client.ObjectKey {
	key := client.ObjectKey{Name: ref.Name}
	if ref.Kind != "ACMEClusterIssuer" {
		key.Namespace = namespace
	}
	return key
}

// issuerLabel names the order's issuer in metrics: namespace/name for an
// ACMEIssuer, the name for an ACMEClusterIssuer.
func issuerLabel(order *v1alpha1.ACMEOrder) string {
	return issuerLabelOf(issuerKey(order))
}

func issuerLabelOf(key client.ObjectKey) string {
	return strings.TrimPrefix(key.String(), "/")
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
