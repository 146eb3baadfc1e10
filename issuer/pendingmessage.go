package issuer

import "strings"

// issuer-lib v0.11.0 puts its pending prefix on a request's message twice:
// the request controller adds it and the CertificateRequest helper adds it
// again, so `cmctl status certificate` would read "Signing still in
// progress. Reason: Signing still in progress. Reason: ...". Newer
// issuer-lib releases cannot be fetched here, so requestStatusWriter writes
// the doubled prefix once on the way to the API server instead.
const (
	pendingPrefix        = "Signing still in progress. Reason: "
	doubledPendingPrefix = pendingPrefix + pendingPrefix
)

func oncePending(s string) string {
	return strings.ReplaceAll(s, doubledPendingPrefix, pendingPrefix)
}
