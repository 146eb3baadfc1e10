package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RenewalWindow is the CA's suggested renewal window (RFC 9773 section 4.2).
type RenewalWindow struct {
	Start metav1.Time `json:"start"`
	End   metav1.Time `json:"end"`
}

// ACMERenewalSpec names the Certificate whose renewals follow the CA's
// renewal information.
type ACMERenewalSpec struct {
	// Certificate is the name of the cert-manager Certificate, in the same
	// namespace, that owns this object.
	Certificate string `json:"certificate"`

	// IssuerRef is the issuer that signed the certificate, whose CA is
	// asked for its renewal information.
	IssuerRef IssuerReference `json:"issuerRef"`
}

// ACMERenewalStatus is what the controller knows of the Certificate's
// current certificate and of when the CA wants it renewed. Only the
// controller writes it: what it records here decides which certificate a
// renewal order names as the one it replaces. ACMERenewal has no status
// subresource: the controller is its only writer (the chart grants nobody
// else write access), and it creates the object with its first record in
// one write.
type ACMERenewalStatus struct {
	// CertID is the ARI identifier (RFC 9773 section 4.1: authority key
	// identifier and serial number) of the certificate the controller last
	// issued for the Certificate.
	// +optional
	CertID string `json:"certID,omitempty"`

	// Serial is that certificate's serial number in hex, as openssl and
	// kubectl's cert-manager plugin print it.
	// +optional
	Serial string `json:"serial,omitempty"`

	// DNSNames are the certificate's names.
	// +optional
	DNSNames []string `json:"dnsNames,omitempty"`

	// NotAfter is when the certificate expires. A renewal is asked for only
	// while the Certificate still holds this certificate.
	// +optional
	NotAfter *metav1.Time `json:"notAfter,omitempty"`

	// AccountURI is the ACME account whose order issued it; only an order
	// of that account can replace it.
	// +optional
	AccountURI string `json:"accountURI,omitempty"`

	// Request is the CertificateRequest it was issued for.
	// +optional
	Request string `json:"request,omitempty"`

	// SuggestedWindow is the CA's window for renewing the certificate, as
	// last read.
	// +optional
	SuggestedWindow *RenewalWindow `json:"suggestedWindow,omitempty"`

	// RenewAt is the time the controller picked, uniformly at random inside
	// the window, to ask cert-manager for a renewal.
	// +optional
	RenewAt *metav1.Time `json:"renewAt,omitempty"`

	// ExplanationURL is the CA's page on why the window is where it is; a
	// CA sets it when it moves a window, for example before revoking.
	// +optional
	ExplanationURL string `json:"explanationURL,omitempty"`

	// LastCheck is when the CA's renewal information was last read.
	// +optional
	LastCheck *metav1.Time `json:"lastCheck,omitempty"`

	// NextCheck is when it is read again.
	// +optional
	NextCheck *metav1.Time `json:"nextCheck,omitempty"`

	// RenewalRequestedAt is when the controller asked cert-manager to renew
	// this certificate (the Certificate's Issuing condition, as
	// `cmctl renew` sets it). It is asked once per certificate.
	// +optional
	RenewalRequestedAt *metav1.Time `json:"renewalRequestedAt,omitempty"`

	// Message says where the renewal stands, or why the CA's renewal
	// information could not be read.
	// +optional
	Message string `json:"message,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:resource:categories=istio-acme,shortName=acmeren
// +kubebuilder:printcolumn:name="Certificate",type="string",JSONPath=".spec.certificate"
// +kubebuilder:printcolumn:name="Window Start",type="string",format="date-time",JSONPath=".status.suggestedWindow.start"
// +kubebuilder:printcolumn:name="Window End",type="string",format="date-time",JSONPath=".status.suggestedWindow.end"
// +kubebuilder:printcolumn:name="Renew At",type="string",format="date-time",JSONPath=".status.renewAt"
// +kubebuilder:printcolumn:name="Next Check",type="string",format="date-time",JSONPath=".status.nextCheck"
// +kubebuilder:printcolumn:name="Serial",type="string",JSONPath=".status.serial",priority=1
// +kubebuilder:printcolumn:name="Explanation",type="string",JSONPath=".status.explanationURL",priority=1
// +kubebuilder:printcolumn:name="Message",type="string",JSONPath=".status.message",priority=1
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"

// ACMERenewal follows the CA's renewal information (ARI, RFC 9773) for the
// current certificate of one cert-manager Certificate our issuers signed,
// and asks cert-manager to renew it when the CA wants. It is named after
// the Certificate, which owns it; the controller writes it, users read it.
type ACMERenewal struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec ACMERenewalSpec `json:"spec"`
	// +optional
	Status ACMERenewalStatus `json:"status,omitzero"`
}

// +kubebuilder:object:root=true

// ACMERenewalList is a list of ACMERenewals.
type ACMERenewalList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ACMERenewal `json:"items"`
}

func init() {
	kinds.register(&ACMERenewal{}, &ACMERenewalList{})
}
