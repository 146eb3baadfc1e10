package issuer

import (
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestTrimCertificateRequestKeepsWhatAPendingRequestNeeds(t *testing.T) {
	request := func(cond *cmapi.CertificateRequestCondition) *cmapi.CertificateRequest {
		cr := &cmapi.CertificateRequest{}
		cr.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "cert-manager"}}
		cr.Spec.Request = []byte("csr")
		cr.Status.Certificate, cr.Status.CA = []byte("cert"), []byte("ca")
		if cond != nil {
			cr.Status.Conditions = []cmapi.CertificateRequestCondition{
				{Type: cmapi.CertificateRequestConditionApproved, Status: cmmeta.ConditionTrue}, *cond,
			}
		}
		return cr
	}
	ready := func(status cmmeta.ConditionStatus, reason string) *cmapi.CertificateRequestCondition {
		return &cmapi.CertificateRequestCondition{Type: cmapi.CertificateRequestConditionReady, Status: status, Reason: reason}
	}
	var transform func(any) (any, error)
	for obj, o := range CertificateRequestCacheOptions() {
		if _, ok := obj.(*cmapi.CertificateRequest); ok {
			transform = o.Transform
		}
	}
	for _, c := range []struct {
		name     string
		cond     *cmapi.CertificateRequestCondition
		finished bool
	}{
		{"new", nil, false},
		{"pending", ready(cmmeta.ConditionFalse, cmapi.CertificateRequestReasonPending), false},
		{"issued", ready(cmmeta.ConditionTrue, cmapi.CertificateRequestReasonIssued), true},
		{"failed", ready(cmmeta.ConditionFalse, cmapi.CertificateRequestReasonFailed), true},
		{"denied", ready(cmmeta.ConditionFalse, cmapi.CertificateRequestReasonDenied), true},
	} {
		out, err := transform(request(c.cond))
		if err != nil {
			t.Fatal(err)
		}
		cr := out.(*cmapi.CertificateRequest)
		if cr.ManagedFields != nil {
			t.Errorf("%s: managedFields kept", c.name)
		}
		kept := cr.Spec.Request != nil && cr.Status.Certificate != nil && cr.Status.CA != nil
		gone := cr.Spec.Request == nil && cr.Status.Certificate == nil && cr.Status.CA == nil
		if c.finished && !gone {
			t.Errorf("%s: the CSR and certificates of a finished request are kept in the cache", c.name)
		}
		if !c.finished && !kept {
			t.Errorf("%s: the CSR or certificates of an unfinished request are dropped; Sign needs the CSR", c.name)
		}
	}
}
