package issuer

import (
	"slices"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
)

func TestRequestEventsLeaveOutIssuerLibsPendingAndIssued(t *testing.T) {
	fake := events.NewFakeRecorder(10)
	rec := requestEvents{EventRecorder: fake}
	cr := &cmapi.CertificateRequest{}
	// The calls issuer-lib v0.11.0 makes, with its reasons and actions.
	rec.Eventf(cr, nil, corev1.EventTypeWarning, "RetryableError", "Synced", "Signing still in progress. Reason: a.example.com: the CA is validating")
	rec.Eventf(cr, nil, corev1.EventTypeNormal, "Issued", "Synced", "Succeeded signing the CertificateRequest")
	rec.Eventf(cr, nil, corev1.EventTypeWarning, "RetryableError", "SyncFailed", "Failed to sign CertificateRequest, will retry: %s", "the CA is unreachable")
	rec.Eventf(cr, nil, corev1.EventTypeWarning, "PermanentError", "SyncFailed", "Failed permanently to sign CertificateRequest: %s", "wildcard")
	rec.Eventf(cr, nil, corev1.EventTypeNormal, "WaitingForIssuerReady", "Synced", "Waiting for issuer to become ready")
	close(fake.Events)
	var got []string
	for e := range fake.Events {
		got = append(got, e)
	}
	want := []string{
		"Warning RetryableError Failed to sign CertificateRequest, will retry: the CA is unreachable",
		"Warning PermanentError Failed permanently to sign CertificateRequest: wildcard",
		"Normal WaitingForIssuerReady Waiting for issuer to become ready",
	}
	if !slices.Equal(got, want) {
		t.Errorf("recorded:\n%q\nwant:\n%q", got, want)
	}
}
