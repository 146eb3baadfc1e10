package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// HostnameGrantSpec grants namespaces DNS names: requests from those
// namespaces may get certificates and challenge routes for the names even
// where no Gateway server on the issuer's gateways admits them (a brand-new
// name that no Gateway lists yet, for instance).
// +kubebuilder:validation:XValidation:rule="size(self.namespaces) > 0 || has(self.namespaceSelector)",message="name the namespaces the grant is for: spec.namespaces, spec.namespaceSelector, or both"
// +kubebuilder:validation:XValidation:rule="size(self.dnsNames) > 0 || size(self.zones) > 0",message="name what is granted: spec.dnsNames, spec.zones, or both"
type HostnameGrantSpec struct {
	// Namespaces are the names of the namespaces granted the names.
	// +optional
	// +kubebuilder:default={}
	// +kubebuilder:validation:MaxItems=256
	// +listType=set
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespaces []string `json:"namespaces"`

	// NamespaceSelector grants the names to every namespace whose labels it
	// matches. An empty selector ({}) matches every namespace. Optional.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// DNSNames are exact names granted, in lower case, such as
	// shop.example.com.
	// +optional
	// +kubebuilder:default={}
	// +kubebuilder:validation:MaxItems=1024
	// +listType=set
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$`
	DNSNames []string `json:"dnsNames"`

	// Zones grant a name and every name below it on label boundaries: zone
	// team-a.example.com grants team-a.example.com and
	// shop.team-a.example.com, not evilteam-a.example.com. In lower case,
	// without a leading "*." or dot.
	// +optional
	// +kubebuilder:default={}
	// +kubebuilder:validation:MaxItems=256
	// +listType=set
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Zones []string `json:"zones"`
}

// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,categories=istio-acme,shortName=hostgrant
// +kubebuilder:printcolumn:name="Namespaces",type="string",JSONPath=".spec.namespaces"
// +kubebuilder:printcolumn:name="Names",type="string",JSONPath=".spec.dnsNames"
// +kubebuilder:printcolumn:name="Zones",type="string",JSONPath=".spec.zones"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"

// HostnameGrant is the platform's explicit grant of DNS names to
// namespaces. Without one, a request from a namespace gets a name only where
// every Gateway server on the issuer's gateway workloads that lists the name
// admits VirtualServices of that namespace (ns/host, ./host in a Gateway of
// that namespace, */host or a bare host), and at least one does. It is
// cluster-scoped so that only whoever may write cluster-scoped objects (the
// platform) grants names; a tenant cannot edit it.
type HostnameGrant struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec HostnameGrantSpec `json:"spec"`
}

// +kubebuilder:object:root=true

// HostnameGrantList is a list of HostnameGrants.
type HostnameGrantList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []HostnameGrant `json:"items"`
}

func init() {
	kinds.register(&HostnameGrant{}, &HostnameGrantList{})
}
