package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// OrderState is the state of an ACME order as the CA last reported it
// (RFC 8555 section 7.1.6).
// +kubebuilder:validation:Enum=pending;ready;processing;valid;invalid
type OrderState string

// The states of an ACME order.
const (
	OrderPending    OrderState = "pending"
	OrderReady      OrderState = "ready"
	OrderProcessing OrderState = "processing"
	OrderValid      OrderState = "valid"
	OrderInvalid    OrderState = "invalid"
)

// IssuerReference names the issuer an order or challenge belongs to.
type IssuerReference struct {
	// Kind is ACMEIssuer or ACMEClusterIssuer.
	// +kubebuilder:validation:Enum=ACMEIssuer;ACMEClusterIssuer
	Kind string `json:"kind"`

	// Name of the issuer. An ACMEIssuer is in the same namespace as the
	// order.
	Name string `json:"name"`
}

// ACMEOrderSpec is the request an ACME order was created for.
type ACMEOrderSpec struct {
	// Request is the name of the cert-manager CertificateRequest, in the
	// same namespace, that this order serves.
	Request string `json:"request"`

	// IssuerRef is the issuer whose ACME account placed the order.
	IssuerRef IssuerReference `json:"issuerRef"`

	// DNSNames are the identifiers of the order, from the request's CSR.
	DNSNames []string `json:"dnsNames"`
}

// ACMEOrderStatus is the order's progress at the CA.
type ACMEOrderStatus struct {
	// URL of the order at the CA. Once set, the controller resumes this
	// order after a restart instead of creating a new one.
	// +optional
	URL string `json:"url,omitempty"`

	// AccountURI is the ACME account that owns the order.
	// +optional
	AccountURI string `json:"accountURI,omitempty"`

	// State is the order's state as last reported by the CA.
	// +optional
	State OrderState `json:"state,omitempty"`

	// FinalizeURL is where the CSR is sent once every authorization is valid.
	// +optional
	FinalizeURL string `json:"finalizeURL,omitempty"`

	// Authorizations are the URLs of the order's authorizations.
	// +optional
	Authorizations []string `json:"authorizations,omitempty"`

	// Message describes the last step taken or the CA's error.
	// +optional
	Message string `json:"message,omitempty"`

	// RequestedAt is when the controller last asked the CA for a new
	// order. It is recorded before asking (the first order of a request
	// that replaces no certificate is asked for as the ACMEOrder is
	// created, and recorded only if its answer is lost), and cleared when
	// the CA refused; set without a URL, it says an order may exist at the
	// CA whose answer was lost (the controller stopped, or the API server
	// was unreachable, before the URL was recorded).
	// +optional
	RequestedAt *metav1.Time `json:"requestedAt,omitempty"`

	// Replaces is the ARI identifier (RFC 9773) of the certificate this
	// request's order was asked to replace, so that a renewal is exempt
	// from the CA's rate limits. It is offered on the request's first order
	// only: an order placed again for the same request (the first expired,
	// was lost or went away) goes without it, so no two orders of one
	// request claim to replace the same certificate.
	// +optional
	Replaces string `json:"replaces,omitempty"`

	// Conditions: Ready is True once the certificate was issued, and False
	// with the step the order is at (Created, Ordering, Authorizing,
	// Finalizing) or Invalid.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=istio-acme,shortName=acmeord
// +kubebuilder:printcolumn:name="Ready",type="string",JSONPath=".status.conditions[?(@.type==\"Ready\")].status"
// +kubebuilder:printcolumn:name="Reason",type="string",JSONPath=".status.conditions[?(@.type==\"Ready\")].reason"
// +kubebuilder:printcolumn:name="Names",type="string",JSONPath=".spec.dnsNames"
// +kubebuilder:printcolumn:name="Request",type="string",JSONPath=".spec.request"
// +kubebuilder:printcolumn:name="Issuer",type="string",JSONPath=".spec.issuerRef.name",priority=1
// +kubebuilder:printcolumn:name="State",type="string",JSONPath=".status.state",priority=1
// +kubebuilder:printcolumn:name="URL",type="string",JSONPath=".status.url",priority=1
// +kubebuilder:printcolumn:name="Message",type="string",JSONPath=".status.message",priority=1
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"

// ACMEOrder records one ACME order placed for a CertificateRequest, which owns
// it. It is written by the controller; users read it to follow an issuance.
type ACMEOrder struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec ACMEOrderSpec `json:"spec"`
	// +optional
	Status ACMEOrderStatus `json:"status,omitzero"`
}

// +kubebuilder:object:root=true

// ACMEOrderList is a list of ACMEOrders.
type ACMEOrderList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ACMEOrder `json:"items"`
}

func init() {
	kinds.register(&ACMEOrder{}, &ACMEOrderList{})
}
