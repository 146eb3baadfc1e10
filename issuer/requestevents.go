package issuer

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
)

// issuer-lib v0.11.0's reasons and actions (unexported there) for the two
// CertificateRequest Events it records that say nothing the signer's own
// do not: SetPending's, and SetIssued's.
const (
	libPendingReason = "RetryableError"
	libIssuedReason  = "Issued"
	libSynced        = "Synced" // the action of both; a failed pass's is "SyncFailed"
)

// requestEvents is the event recorder issuer-lib's controllers get. It
// leaves out issuer-lib's Event for every pass that leaves a request
// pending and its "Succeeded signing" one; everything else (the issuers'
// checks, retryable and permanent errors, waiting for an issuer) is
// recorded as issuer-lib asks.
//
// The pending Event is a Warning: a normal issuance raised three or four of
// them, one per change of the progress message, which alerting on Warning
// Events would page for. And client-go's recorder keeps every Event it sent
// for 6 to 12 minutes, keyed by the request's resourceVersion, which each
// status write changes: a renewal wave of 1,000 Certificates held about
// 4 MB of them. The progress stays where `cmctl status certificate` shows
// it, the request's Ready condition; the signer records the Events worth
// keeping: Issued (with the order), and what went wrong.
type requestEvents struct {
	events.EventRecorder
}

func (r requestEvents) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	if action == libSynced && (reason == libPendingReason || reason == libIssuedReason) {
		return
	}
	r.EventRecorder.Eventf(regarding, related, eventtype, reason, action, note, args...)
}
