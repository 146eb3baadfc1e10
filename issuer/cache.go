package issuer

import (
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/internal/kubeutil"
)

// CertificateRequestCacheOptions caches CertificateRequests without their
// managedFields (see kubeutil.CacheTransform) and, once a request is finished (Ready, failed or denied),
// without its CSR and certificates: the request controller reads nothing
// of a finished request but its conditions, and cert-manager keeps every
// revision's request unless a Certificate limits its history, so the
// cache would otherwise hold every certificate ever issued.
//
// Nothing in this controller may write a cached request back whole: its
// status would lose the certificate. Status is written with server-side
// apply patches of the fields set.
func CertificateRequestCacheOptions() map[client.Object]cache.ByObject {
	return map[client.Object]cache.ByObject{
		&cmapi.CertificateRequest{}: {Transform: kubeutil.CacheTransform(trimCertificateRequest)},
	}
}

func trimCertificateRequest(o client.Object) {
	if cr, ok := o.(*cmapi.CertificateRequest); ok && finished(cr) {
		cr.Spec.Request = nil
		cr.Status.Certificate = nil
		cr.Status.CA = nil
	}
}

// finished says whether the request's Ready condition is True, or False
// because it failed or was denied: the states issuer-lib leaves alone.
func finished(cr *cmapi.CertificateRequest) bool {
	for _, c := range cr.Status.Conditions {
		if c.Type != cmapi.CertificateRequestConditionReady {
			continue
		}
		return c.Status == cmmeta.ConditionTrue ||
			c.Reason == cmapi.CertificateRequestReasonFailed || c.Reason == cmapi.CertificateRequestReasonDenied
	}
	return false
}
