package v1alpha1

import (
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// ConditionReady is the condition ACMEOrders and ACMEChallenges carry, so
// that `kubectl wait --for=condition=Ready` and GitOps health checks read
// them as they read cert-manager's own objects.
const ConditionReady = "Ready"

// Labels the controller puts on the ACMEOrders and ACMEChallenges of a
// CertificateRequest, so that `kubectl get -l` finds them from the request.
// A name that is not a valid label value (longer than 63 characters) is left
// out: spec.request and spec.order always hold it.
const (
	LabelCertificateRequest = "istio-acme.io/certificate-request"
	LabelOrder              = "istio-acme.io/order"
)

// SetLabelIfValid sets key to value on obj's labels when value is a valid
// label value.
func SetLabelIfValid(obj metav1.Object, key, value string) {
	if len(validation.IsValidLabelValue(value)) != 0 {
		return
	}
	labels := obj.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[key] = value
	obj.SetLabels(labels)
}

// Reasons of the Ready condition of an ACMEOrder.
const (
	OrderReasonCreated     = "Created"     // no order was asked of the CA yet
	OrderReasonOrdering    = "Ordering"    // the CA was asked; its answer is not recorded yet
	OrderReasonAuthorizing = "Authorizing" // the CA waits for the challenges
	OrderReasonFinalizing  = "Finalizing"  // authorized; the certificate is being issued
	OrderReasonIssued      = "Issued"      // the certificate was issued
	OrderReasonInvalid     = "Invalid"     // the CA refused the order
)

// Reasons of the Ready condition of an ACMEChallenge; while it is not
// presented, the reason is the problem's, as in its Events (HostNotAllowed,
// NotPresented, PresentFailed, ...).
const (
	ChallengeReasonPending    = "Pending"    // the routes are not published yet
	ChallengeReasonPresented  = "Presented"  // the routes answer; the CA is not asked yet
	ChallengeReasonValidating = "Validating" // the CA was asked to validate
	ChallengeReasonValid      = "Valid"      // the CA validated it
	ChallengeReasonInvalid    = "Invalid"    // the CA's validation failed
)

// SyncReadyCondition sets the order's Ready condition from its status.
func (o *ACMEOrder) SyncReadyCondition() {
	st := &o.Status
	status, reason := metav1.ConditionFalse, OrderReasonCreated
	switch {
	case st.State == OrderValid:
		status, reason = metav1.ConditionTrue, OrderReasonIssued
	case st.State == OrderInvalid:
		reason = OrderReasonInvalid
	case st.State == OrderReady || st.State == OrderProcessing:
		reason = OrderReasonFinalizing
	case st.State == OrderPending:
		reason = OrderReasonAuthorizing
	case st.RequestedAt != nil:
		reason = OrderReasonOrdering
	}
	setReady(&st.Conditions, o.Generation, status, reason, st.Message)
}

// SyncReadyCondition sets the challenge's Ready condition from its status.
// problem is the reason the challenge is not presented (HostNotAllowed,
// NotPresented, ...), used while the CA has not been asked; "" for none.
func (c *ACMEChallenge) SyncReadyCondition(problem string) {
	st := &c.Status
	status, reason := metav1.ConditionFalse, ChallengeReasonPending
	switch {
	case st.State == ChallengeValid:
		status, reason = metav1.ConditionTrue, ChallengeReasonValid
	case st.State == ChallengeInvalid:
		reason = ChallengeReasonInvalid
	case st.State == ChallengeProcessing:
		reason = ChallengeReasonValidating
	case problem != "":
		reason = problem
	case st.Presented:
		reason = ChallengeReasonPresented
	default:
		// Keep the problem an earlier write recorded while nothing changed
		// that would clear it.
		if prev := meta.FindStatusCondition(st.Conditions, ConditionReady); prev != nil && prev.Message == st.Message {
			reason = prev.Reason
		}
	}
	setReady(&st.Conditions, c.Generation, status, reason, st.Message)
}

func setReady(conds *[]metav1.Condition, generation int64, status metav1.ConditionStatus, reason, message string) {
	if message == "" {
		message = reason
	}
	// The API server caps a condition's message at 32 KiB.
	const maxMessage = 32 * 1024
	if len(message) > maxMessage {
		message = strings.ToValidUTF8(message[:maxMessage-3], "") + "..."
	}
	meta.SetStatusCondition(conds, metav1.Condition{
		Type:               ConditionReady,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: generation,
	})
}
