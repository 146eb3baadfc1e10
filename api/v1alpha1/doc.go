// Package v1alpha1 holds the istio-acme.io/v1alpha1 API: the ACMEIssuer and
// ACMEClusterIssuer that users reference from a cert-manager Certificate, and
// the ACMEOrder and ACMEChallenge objects in which the controller keeps the
// state of an ACME order, so that it survives restarts and is visible with
// kubectl.
//
// +kubebuilder:object:generate=true
// +groupName=istio-acme.io
package v1alpha1
