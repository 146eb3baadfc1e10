package v1alpha1

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestOrderReadyCondition(t *testing.T) {
	now := metav1.Now()
	for _, c := range []struct {
		status ACMEOrderStatus
		ready  metav1.ConditionStatus
		reason string
	}{
		{ACMEOrderStatus{}, metav1.ConditionFalse, OrderReasonCreated},
		{ACMEOrderStatus{RequestedAt: &now, Message: "asking"}, metav1.ConditionFalse, OrderReasonOrdering},
		{ACMEOrderStatus{State: OrderPending}, metav1.ConditionFalse, OrderReasonAuthorizing},
		{ACMEOrderStatus{State: OrderReady}, metav1.ConditionFalse, OrderReasonFinalizing},
		{ACMEOrderStatus{State: OrderProcessing}, metav1.ConditionFalse, OrderReasonFinalizing},
		{ACMEOrderStatus{State: OrderValid, Message: "certificate issued"}, metav1.ConditionTrue, OrderReasonIssued},
		{ACMEOrderStatus{State: OrderInvalid, Message: "the CA marked order x invalid"}, metav1.ConditionFalse, OrderReasonInvalid},
	} {
		o := &ACMEOrder{ObjectMeta: metav1.ObjectMeta{Generation: 3}, Status: c.status}
		o.SyncReadyCondition()
		got := meta.FindStatusCondition(o.Status.Conditions, ConditionReady)
		if got == nil || got.Status != c.ready || got.Reason != c.reason || got.ObservedGeneration != 3 {
			t.Errorf("order status %+v: Ready condition %+v, want %s/%s", c.status, got, c.ready, c.reason)
			continue
		}
		if c.status.Message != "" && got.Message != c.status.Message {
			t.Errorf("order status %+v: condition message %q, want the status message", c.status, got.Message)
		}
	}
}

func TestChallengeReadyCondition(t *testing.T) {
	for _, c := range []struct {
		name    string
		status  ACMEChallengeStatus
		problem string
		reason  string
	}{
		{"new", ACMEChallengeStatus{}, "", ChallengeReasonPending},
		{"refused", ACMEChallengeStatus{Message: "not allowed"}, "HostNotAllowed", "HostNotAllowed"},
		{"presented", ACMEChallengeStatus{Presented: true}, "", ChallengeReasonPresented},
		{"validating", ACMEChallengeStatus{Presented: true, State: ChallengeProcessing}, "", ChallengeReasonValidating},
		{"invalid", ACMEChallengeStatus{State: ChallengeInvalid}, "", ChallengeReasonInvalid},
		{"valid", ACMEChallengeStatus{State: ChallengeValid}, "", ChallengeReasonValid},
	} {
		ch := &ACMEChallenge{Status: c.status}
		ch.SyncReadyCondition(c.problem)
		got := meta.FindStatusCondition(ch.Status.Conditions, ConditionReady)
		want := metav1.ConditionFalse
		if c.reason == ChallengeReasonValid {
			want = metav1.ConditionTrue
		}
		if got == nil || got.Status != want || got.Reason != c.reason {
			t.Errorf("%s: Ready condition %+v, want %s/%s", c.name, got, want, c.reason)
		}
	}

	// A write that changes nothing about the problem keeps its reason.
	ch := &ACMEChallenge{Status: ACMEChallengeStatus{Message: "not allowed"}}
	ch.SyncReadyCondition("HostNotAllowed")
	ch.SyncReadyCondition("")
	if got := meta.FindStatusCondition(ch.Status.Conditions, ConditionReady); got.Reason != "HostNotAllowed" {
		t.Errorf("a later write without a problem changed the reason to %s", got.Reason)
	}

	// The API server refuses condition messages over 32 KiB.
	ch = &ACMEChallenge{Status: ACMEChallengeStatus{Message: strings.Repeat("é", 40000)}}
	ch.SyncReadyCondition("NotPresented")
	if got := meta.FindStatusCondition(ch.Status.Conditions, ConditionReady); len(got.Message) > 32*1024 || !strings.HasSuffix(got.Message, "...") {
		t.Errorf("a long message became a condition message of %d bytes", len(got.Message))
	}
}
