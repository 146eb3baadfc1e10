package issuer

import (
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/cert-manager/issuer-lib/controllers/signer"
)

func TestChallengeName(t *testing.T) {
	a := challengeName("req", "a.example.com")
	if a != challengeName("req", "a.example.com") || a == challengeName("req", "b.example.com") {
		t.Fatal("challenge names must be stable per host and distinct between hosts")
	}
	long := challengeName(strings.Repeat("x", 260), "a.example.com")
	if len(long) > 253 {
		t.Fatalf("name of %d characters", len(long))
	}
}
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

// The pending message is the request's status and an Event whenever it
// changes: while the CA validates, it may change once a minute, not on
// every pass.
func TestValidatingSinceChangesOncePerMinute(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, ""},
		{3 * time.Second, ""},
		{59 * time.Second, ""},
		{61 * time.Second, " (for over 1 min)"},
		{119 * time.Second, " (for over 1 min)"},
		{10*time.Minute + 30*time.Second, " (for over 10 min)"},
	} {
		if got := validatingSince(c.d); got != c.want {
			t.Errorf("validatingSince(%s) = %q, want %q", c.d, got, c.want)
		}
	}
}
