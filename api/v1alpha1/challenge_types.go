package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ChallengeState is the state of an HTTP-01 challenge as the CA last reported
// it (RFC 8555 section 7.1.6); the controller records processing, valid
// and invalid (pending is the state before it asks the CA, recorded as
// none).
// +kubebuilder:validation:Enum=pending;processing;valid;invalid
type ChallengeState string

// ChallengeRoutesFinalizer keeps an ACMEChallenge until the controller has
// deleted what it cannot own: routes in another namespace (a Gateway of
// its own in the gateway namespace, a VirtualService in a requester's
// namespace, a temporary certificate's Secret) and the temporary-certificate
// annotation on a Certificate. Routes in the challenge's own namespace are
// owned by it and go with it through the garbage collector; a challenge that
// has only those carries no finalizer.
const ChallengeRoutesFinalizer = "istio-acme.io/routes"

// The states of an ACME challenge.
const (
	ChallengeProcessing ChallengeState = "processing"
	ChallengeValid      ChallengeState = "valid"
	ChallengeInvalid    ChallengeState = "invalid"
)

// ACMEChallengeSpec is one HTTP-01 challenge to answer.
type ACMEChallengeSpec struct {
	// Order is the name of the ACMEOrder, in the same namespace, that owns
	// this challenge; empty for a challenge answered for a cert-manager
	// Challenge, which owns it instead.
	// +optional
	Order string `json:"order,omitempty"`

	// DNSName is the challenged host.
	DNSName string `json:"dnsName"`

	// Token is the challenge token; the CA fetches
	// http://<dnsName>/.well-known/acme-challenge/<token>.
	Token string `json:"token"`

	// Key is the key authorization the token server answers with.
	Key string `json:"key"`

	// URL of the challenge at the CA.
	URL string `json:"url"`

	// AuthorizationURL is the URL of the authorization the challenge belongs to.
	AuthorizationURL string `json:"authorizationURL"`

	// Solver is the issuer's routing configuration when the challenge was
	// created; the routes are built and later removed from it, even if the
	// issuer changes meanwhile.
	Solver IstioHTTP01Solver `json:"solver"`

	// IngressClass is, for a challenge answered for a cert-manager
	// Challenge, the IngressClass its solver names; Solver then came from
	// the class's IstioSolverClass, or from the defaults when the class has
	// no spec.parameters.
	// +optional
	IngressClass string `json:"ingressClass,omitempty"`

	// SolverClass is the IstioSolverClass Solver came from, if any.
	// +optional
	SolverClass string `json:"solverClass,omitempty"`

	// RequesterNamespace, when set, is the namespace the challenge is
	// judged for and its VirtualServices are written in instead of its
	// own: the Gateway's, for a Certificate the Gateway shim keeps in the
	// gateway pods' namespace. The controller believes it only when the
	// challenge's request is of such a Certificate.
	// +optional
	RequesterNamespace string `json:"requesterNamespace,omitempty"`
}

// ObjectReference names an object the controller created for a challenge.
type ObjectReference struct {
	// APIVersion of the object.
	APIVersion string `json:"apiVersion"`
	// Kind of the object.
	Kind string `json:"kind"`
	// Namespace of the object.
	Namespace string `json:"namespace"`
	// Name of the object.
	Name string `json:"name"`
}

// ACMEChallengeStatus is the challenge's progress.
type ACMEChallengeStatus struct {
	// Presented is true once every route for the challenge exists.
	// +optional
	Presented bool `json:"presented,omitempty"`

	// Routes are the Istio objects published for this challenge. They are
	// deleted when the challenge ends.
	// +optional
	Routes []ObjectReference `json:"routes,omitempty"`

	// State is the challenge's state as last reported by the CA; empty until
	// the controller asked the CA to validate it.
	// +optional
	State ChallengeState `json:"state,omitempty"`

	// AcceptedAt is when the controller asked the CA to validate.
	// +optional
	AcceptedAt *metav1.Time `json:"acceptedAt,omitempty"`

	// Message describes the last step taken or what went wrong.
	// +optional
	Message string `json:"message,omitempty"`

	// TemporaryCertificateFor is the Certificate this challenge asked
	// cert-manager to store a temporary certificate for
	// (cert-manager.io/issue-temporary-certificate), because the user's
	// HTTPS server the CA is redirected to serves the Secret that
	// Certificate fills, which did not exist yet. Recorded once the
	// annotation is set; it is removed when the challenge ends, unless
	// someone else set it too.
	// +optional
	TemporaryCertificateFor *ObjectReference `json:"temporaryCertificateFor,omitempty"`

	// Conditions: Ready is True once the CA validated the challenge, and
	// False with where it is (Pending, Presented, Validating, Invalid) or
	// the problem that keeps it from being presented (HostNotAllowed,
	// NotPresented, PresentFailed, ...).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=istio-acme,shortName=acmechal
// +kubebuilder:printcolumn:name="Ready",type="string",JSONPath=".status.conditions[?(@.type==\"Ready\")].status"
// +kubebuilder:printcolumn:name="Reason",type="string",JSONPath=".status.conditions[?(@.type==\"Ready\")].reason"
// +kubebuilder:printcolumn:name="Host",type="string",JSONPath=".spec.dnsName"
// +kubebuilder:printcolumn:name="Order",type="string",JSONPath=".spec.order"
// +kubebuilder:printcolumn:name="Presented",type="boolean",JSONPath=".status.presented",priority=1
// +kubebuilder:printcolumn:name="State",type="string",JSONPath=".status.state",priority=1
// +kubebuilder:printcolumn:name="Message",type="string",JSONPath=".status.message",priority=1
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"

// ACMEChallenge is one HTTP-01 challenge, owned by the ACMEOrder it belongs
// to or by the cert-manager Challenge it answers. While
// it exists, every replica of the controller answers its token, and its
// Gateway and VirtualService route the CA's request to them.
type ACMEChallenge struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec ACMEChallengeSpec `json:"spec"`
	// +optional
	Status ACMEChallengeStatus `json:"status,omitzero"`
}

// +kubebuilder:object:root=true

// ACMEChallengeList is a list of ACMEChallenges.
type ACMEChallengeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ACMEChallenge `json:"items"`
}

func init() {
	kinds.register(&ACMEChallenge{}, &ACMEChallengeList{})
}
