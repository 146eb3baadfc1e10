// Package dnsname holds the one way the controller compares DNS names.
package dnsname

import "strings"

// Canonical is name as ACME CAs and Istio compare it: lower case, without a
// trailing dot.
func Canonical(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}
