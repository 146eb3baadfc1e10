package issuer

import (
	"context"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// unchangedRequestStatus reports whether applied, an apply of a
// CertificateRequest's status, would leave the request as the cache holds
// it: nothing but pending conditions, each one already there as it is.
//
// issuer-lib applies the request's status on every pass, also when the
// message stayed the same: a pass every few seconds while a name waits for
// its gateway, 20 a Certificate among thousands of Gateways. Each is a
// request the API server decodes, reads from etcd and compares, for
// nothing. Only pending passes are left out: an apply with a certificate,
// a failure time, another Ready reason, or a condition the cache lacks or
// holds otherwise is sent. A stale cache can hold back a pending message
// only until the next pass, which reads the request again.
func unchangedRequestStatus(ctx context.Context, cache client.Reader, obj client.Object, applied *cmapi.CertificateRequest) bool {
	st := applied.Status
	if len(st.Certificate) > 0 || len(st.CA) > 0 || st.FailureTime != nil || len(st.Conditions) == 0 {
		return false
	}
	var cached cmapi.CertificateRequest
	if err := cache.Get(ctx, client.ObjectKeyFromObject(obj), &cached); err != nil {
		return false
	}
	for _, want := range st.Conditions {
		if want.Type == cmapi.CertificateRequestConditionReady && want.Reason != cmapi.CertificateRequestReasonPending {
			return false
		}
		if !hasCondition(cached.Status.Conditions, want) {
			return false
		}
	}
	return true
}

func hasCondition(in []cmapi.CertificateRequestCondition, want cmapi.CertificateRequestCondition) bool {
	for _, c := range in {
		if c.Type != want.Type {
			continue
		}
		sameTime := (c.LastTransitionTime == nil) == (want.LastTransitionTime == nil) &&
			(c.LastTransitionTime == nil || c.LastTransitionTime.Equal(want.LastTransitionTime))
		return c.Status == want.Status && c.Reason == want.Reason && c.Message == want.Message && sameTime
	}
	return false
}
