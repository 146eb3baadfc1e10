package v1alpha1

import (
	issuerapi "github.com/cert-manager/issuer-lib/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ACMEIssuerSpec configures an ACME account and how its HTTP-01 challenges are
// routed through Istio. ACMEIssuer and ACMEClusterIssuer share it.
type ACMEIssuerSpec struct {
	// Server is the URL of the ACME server's directory, for example
	// https://acme-staging-v02.api.letsencrypt.org/directory for Let's Encrypt's
	// staging environment. Required.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^https://[^\\\\s/]+(/[^\\\\s]*)?$')",message="must be the https:// URL of the CA's ACME directory, without spaces: RFC 8555 requires HTTPS"
	Server string `json:"server"`

	// Email is the contact address registered with the ACME account. The CA
	// uses it for expiry and policy notices. Optional; changing it updates the
	// account's contact.
	// +optional
	// +kubebuilder:validation:Pattern=`^[^@\s]+@[^@\s]+$`
	// +kubebuilder:validation:MaxLength=320
	Email string `json:"email,omitempty"`

	// PrivateKeySecretRef names the Secret that holds the ACME account's
	// private key (PEM). For an ACMEIssuer the Secret is in the issuer's
	// namespace; for an ACMEClusterIssuer it is in the controller's cluster
	// resource namespace. When the Secret or the key is absent a new ECDSA
	// P-256 key is generated and stored there; an existing key is never
	// replaced, since it is the account's identity. Key defaults to "tls.key".
	PrivateKeySecretRef SecretKeySelector `json:"privateKeySecretRef"`

	// CABundle is a PEM bundle of CA certificates trusted when connecting to
	// the ACME server, for private CAs such as step-ca. Optional; the system's
	// trust store is used when empty.
	// +optional
	CABundle []byte `json:"caBundle,omitempty"`

	// ExternalAccountBinding links the ACME account to an account the CA
	// knows already. Required by some CAs, such as ZeroSSL and Google Trust
	// Services. Optional.
	// +optional
	ExternalAccountBinding *ExternalAccountBinding `json:"externalAccountBinding,omitempty"`

	// Profile asks the CA for a certificate profile, such as "classic" or
	// "shortlived" at Let's Encrypt. Optional; the CA's default profile is
	// used when empty. The CA must advertise the profile in its directory.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Profile string `json:"profile,omitempty"`

	// Solver says how HTTP-01 challenges are answered. Defaults to routing
	// through the ingress gateway labelled istio=ingressgateway.
	// +optional
	// +kubebuilder:default={}
	Solver ACMESolver `json:"solver,omitzero"`
}

// SecretKeySelector names one key of a Secret.
type SecretKeySelector struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// Key within the Secret's data. Each field that uses a SecretKeySelector
	// documents its default.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key,omitempty"`
}

// ExternalAccountBinding holds the CA-issued credentials that bind a new ACME
// account to an existing account at the CA (RFC 8555 section 7.3.4).
type ExternalAccountBinding struct {
	// KeyID is the key identifier the CA issued.
	// +kubebuilder:validation:MinLength=1
	KeyID string `json:"keyID"`

	// KeySecretRef names the Secret holding the HMAC key the CA issued, as the
	// CA shows it (base64url). The Secret is read from the same namespace as
	// the account key. Key defaults to "secret".
	KeySecretRef SecretKeySelector `json:"keySecretRef"`
}

// ACMESolver says how challenges are answered.
type ACMESolver struct {
	// Istio answers HTTP-01 challenges through Istio ingress gateways, with a
	// Gateway and a VirtualService per challenged host that route
	// /.well-known/acme-challenge/<token> to the issuer's token server.
	// +optional
	// +kubebuilder:default={}
	Istio IstioHTTP01Solver `json:"istio,omitzero"`
}

// IstioHTTP01Solver places the routes that answer an HTTP-01 challenge.
type IstioHTTP01Solver struct {
	// Gateways are the ingress gateway workloads that receive the CA's
	// requests. For each challenged host the token is routed on every one
	// whose Gateways already serve the host; when none does, a Gateway for
	// exactly the host is created on each of them. List one entry per
	// gateway Deployment (or per Istio revision of it) that public DNS may
	// send a challenged host to. Defaults to Istio's default ingress
	// gateway, the pods labelled istio=ingressgateway.
	// +optional
	// +kubebuilder:default={{selector:{"istio":"ingressgateway"}}}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	Gateways []GatewayWorkloadSelector `json:"gateways,omitempty"`

	// GatewayNamespace is the namespace in which a Gateway of the
	// challenge's own is created, when no Gateway of yours serves the host
	// where the CA arrives; its server admits only the requester's
	// VirtualServices (requester-namespace/host). The challenge's
	// VirtualServices are written in the requester's namespace. Defaults to
	// "istio-system".
	// +optional
	// +kubebuilder:default="istio-system"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="must be a Kubernetes name: lower-case letters, digits and '-', starting and ending with a letter or digit"
	GatewayNamespace string `json:"gatewayNamespace,omitempty"`

	// TokenService is the Service in front of the issuer's token server, the
	// destination of the challenge routes. Defaults to the Service the Helm
	// chart installs: istio-acme-issuer in namespace istio-acme-issuer, port
	// 8089.
	// +optional
	// +kubebuilder:default={}
	TokenService TokenServiceReference `json:"tokenService,omitzero"`

	// TemporaryHTTPSServer lets a challenge publish, while it lasts, an
	// HTTPS server for exactly the challenged host with a self-signed
	// certificate (the CA does not verify it), when the host's port-80
	// server redirects to HTTPS (tls.httpsRedirect) and no server can
	// complete a TLS handshake for the host there: none serves it, or its
	// credentialName Secret does not exist yet or holds no certificate,
	// which is the case on a host's first issuance when that Secret is the
	// one being issued. It changes nothing for anybody's traffic: the
	// host's HTTPS does not work until then anyway. Its Secret is created
	// in the gateway pods' namespace. Defaults to true; set false to have
	// the request report the redirect instead.
	// +optional
	// +kubebuilder:default=true
	TemporaryHTTPSServer *bool `json:"temporaryHTTPSServer,omitempty"`

	// SelfCheckThroughDNS, when true, also fetches the token the way the CA
	// will before the CA is asked: the challenged host is resolved through
	// DNS (the controller's resolver, or --self-check-nameservers) and the
	// request goes to the address it returns. This catches DNS that does
	// not point at the gateway, but needs the cluster to reach its own
	// public address (some load balancers do not hairpin). The check
	// through the gateway Services always runs.
	// +optional
	SelfCheckThroughDNS bool `json:"selfCheckThroughDNS,omitempty"`
}

// GatewayWorkloadSelector names one ingress gateway workload: its pods.
type GatewayWorkloadSelector struct {
	// Selector is the gateway pods' labels, as a Gateway's spec.selector
	// would name them (for example {"istio": "ingressgateway"}, or
	// {"istio": "ingressgateway", "istio.io/rev": "canary"} for one
	// revision). It becomes the selector of a Gateway created for a host.
	// +kubebuilder:validation:MinProperties=1
	Selector map[string]string `json:"selector"`

	// Namespace, when set, counts only the gateway pods in this namespace,
	// for when the same labels are used by gateways in several namespaces.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="must be a Kubernetes name: lower-case letters, digits and '-', starting and ending with a letter or digit"
	Namespace string `json:"namespace,omitempty"`
}

// TokenServiceReference names the Service that fronts the token server.
type TokenServiceReference struct {
	// Name of the Service. Defaults to "istio-acme-issuer".
	// +optional
	// +kubebuilder:default="istio-acme-issuer"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="must be a Kubernetes name: lower-case letters, digits and '-', starting and ending with a letter or digit"
	Name string `json:"name,omitempty"`

	// Namespace of the Service. Defaults to "istio-acme-issuer".
	// +optional
	// +kubebuilder:default="istio-acme-issuer"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="must be a Kubernetes name: lower-case letters, digits and '-', starting and ending with a letter or digit"
	Namespace string `json:"namespace,omitempty"`

	// Port of the Service. Defaults to 8089.
	// +optional
	// +kubebuilder:default=8089
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`
}

// ACMEIssuerStatus is the observed state of an ACME issuer.
type ACMEIssuerStatus struct {
	issuerapi.IssuerStatus `json:",inline"`

	// Account is the ACME account this issuer registered or recovered.
	// +optional
	Account *ACMEAccountStatus `json:"account,omitempty"`
}

// ACMEAccountStatus records the ACME account in use.
type ACMEAccountStatus struct {
	// URI is the account's URL at the ACME server.
	URI string `json:"uri"`

	// Server is the directory URL the account was registered with.
	Server string `json:"server"`

	// Email is the contact registered with the account.
	// +optional
	Email string `json:"email,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=istio-acme,shortName=acmeiss
// +kubebuilder:printcolumn:name="Ready",type="string",JSONPath=".status.conditions[?(@.type==\"Ready\")].status"
// +kubebuilder:printcolumn:name="Reason",type="string",JSONPath=".status.conditions[?(@.type==\"Ready\")].reason",priority=1
// +kubebuilder:printcolumn:name="Message",type="string",JSONPath=".status.conditions[?(@.type==\"Ready\")].message",priority=1
// +kubebuilder:printcolumn:name="Server",type="string",JSONPath=".spec.server",priority=1
// +kubebuilder:printcolumn:name="Account",type="string",JSONPath=".status.account.uri",priority=1
// +kubebuilder:printcolumn:name="LastTransition",type="date",JSONPath=".status.conditions[?(@.type==\"Ready\")].lastTransitionTime",priority=1
// +kubebuilder:printcolumn:name="ObservedGeneration",type="integer",JSONPath=".status.conditions[?(@.type==\"Ready\")].observedGeneration",priority=1
// +kubebuilder:printcolumn:name="Generation",type="integer",JSONPath=".metadata.generation",priority=1
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"

// ACMEIssuer issues certificates from an ACME CA for CertificateRequests in
// its own namespace, solving HTTP-01 through Istio.
type ACMEIssuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec ACMEIssuerSpec `json:"spec"`
	// +optional
	Status ACMEIssuerStatus `json:"status,omitzero"`
}

// +kubebuilder:object:root=true

// ACMEIssuerList is a list of ACMEIssuers.
type ACMEIssuerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ACMEIssuer `json:"items"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,categories=istio-acme,shortName=acmeciss
// +kubebuilder:printcolumn:name="Ready",type="string",JSONPath=".status.conditions[?(@.type==\"Ready\")].status"
// +kubebuilder:printcolumn:name="Reason",type="string",JSONPath=".status.conditions[?(@.type==\"Ready\")].reason",priority=1
// +kubebuilder:printcolumn:name="Message",type="string",JSONPath=".status.conditions[?(@.type==\"Ready\")].message",priority=1
// +kubebuilder:printcolumn:name="Server",type="string",JSONPath=".spec.server",priority=1
// +kubebuilder:printcolumn:name="Account",type="string",JSONPath=".status.account.uri",priority=1
// +kubebuilder:printcolumn:name="LastTransition",type="date",JSONPath=".status.conditions[?(@.type==\"Ready\")].lastTransitionTime",priority=1
// +kubebuilder:printcolumn:name="ObservedGeneration",type="integer",JSONPath=".status.conditions[?(@.type==\"Ready\")].observedGeneration",priority=1
// +kubebuilder:printcolumn:name="Generation",type="integer",JSONPath=".metadata.generation",priority=1
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"

// ACMEClusterIssuer issues certificates from an ACME CA for CertificateRequests
// in any namespace, solving HTTP-01 through Istio.
type ACMEClusterIssuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec ACMEIssuerSpec `json:"spec"`
	// +optional
	Status ACMEIssuerStatus `json:"status,omitzero"`
}

// +kubebuilder:object:root=true

// ACMEClusterIssuerList is a list of ACMEClusterIssuers.
type ACMEClusterIssuerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ACMEClusterIssuer `json:"items"`
}

var (
	_ issuerapi.Issuer = &ACMEIssuer{}
	_ issuerapi.Issuer = &ACMEClusterIssuer{}
)

// GetConditions returns the issuer's status conditions for issuer-lib.
func (i *ACMEIssuer) GetConditions() []metav1.Condition { return i.Status.Conditions }

// GetIssuerTypeIdentifier names the signer of this kind, "acmeissuers.istio-acme.io".
func (i *ACMEIssuer) GetIssuerTypeIdentifier() string { return "acmeissuers.istio-acme.io" }

// GetConditions returns the issuer's status conditions for issuer-lib.
func (i *ACMEClusterIssuer) GetConditions() []metav1.Condition { return i.Status.Conditions }

// GetIssuerTypeIdentifier names the signer of this kind, "acmeclusterissuers.istio-acme.io".
func (i *ACMEClusterIssuer) GetIssuerTypeIdentifier() string {
	return "acmeclusterissuers.istio-acme.io"
}

func init() {
	kinds.register(&ACMEIssuer{}, &ACMEIssuerList{}, &ACMEClusterIssuer{}, &ACMEClusterIssuerList{})
}

// ACMEIssuerObject is what ACMEIssuer and ACMEClusterIssuer have in common.
// +kubebuilder:object:generate=false
type ACMEIssuerObject interface {
	issuerapi.Issuer
	GetSpec() *ACMEIssuerSpec
	GetStatus() *ACMEIssuerStatus
}

var (
	_ ACMEIssuerObject = &ACMEIssuer{}
	_ ACMEIssuerObject = &ACMEClusterIssuer{}
)

// GetSpec returns the issuer's spec.
func (i *ACMEIssuer) GetSpec() *ACMEIssuerSpec { return &i.Spec }

// GetStatus returns the issuer's status.
func (i *ACMEIssuer) GetStatus() *ACMEIssuerStatus { return &i.Status }

// GetSpec returns the issuer's spec.
func (i *ACMEClusterIssuer) GetSpec() *ACMEIssuerSpec { return &i.Spec }

// GetStatus returns the issuer's status.
func (i *ACMEClusterIssuer) GetStatus() *ACMEIssuerStatus { return &i.Status }
