package issuer

import (
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/cert-manager/issuer-lib/controllers/signer"
)

func TestShowsProgressFindsAPartOfTheRequestsMessage(t *testing.T) {
	request := func(message string) signer.CertificateRequestObject {
		return signer.CertificateRequestObjectFromCertificateRequest(&cmapi.CertificateRequest{Status: cmapi.CertificateRequestStatus{
			Conditions: []cmapi.CertificateRequestCondition{{Type: cmapi.CertificateRequestConditionReady, Status: cmmeta.ConditionFalse, Message: message}},
		}})
	}
	stuck := "a.example.com: publishing routes (creating Gateway x/y: forbidden)"
	for _, tc := range []struct {
		message string
		want    bool
	}{
		{pendingPrefix + stuck, true},
		{pendingPrefix + "b.example.com: the CA is validating; " + stuck, true},
		{pendingPrefix + "a.example.com: publishing routes", false},
		{pendingPrefix + "www." + stuck, false},
		{"", false},
	} {
		if got := showsProgress(request(tc.message), stuck); got != tc.want {
			t.Errorf("showsProgress(%q) = %v, want %v", tc.message, got, tc.want)
		}
	}
	if showsProgress(signer.CertificateRequestObjectFromCertificateRequest(&cmapi.CertificateRequest{}), stuck) {
		t.Error("a request without a Ready condition shows no progress")
	}
}
