package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SolverIngressController is the spec.controller of the IngressClasses this
// controller answers for: cert-manager's own ACME issuers name such a class
// in an http01.ingress solver, and their Challenges are routed through
// Istio instead of by an ingress controller.
const SolverIngressController = "istio-acme.io/solver"

// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,categories=istio-acme,shortName=isc
// +kubebuilder:printcolumn:name="Gateway namespace",type="string",JSONPath=".spec.gatewayNamespace"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"

// IstioSolverClass holds the Istio routing settings of an IngressClass whose
// spec.controller is istio-acme.io/solver, named by the class's
// spec.parameters. A cert-manager ACME Issuer or ClusterIssuer whose
// http01.ingress solver names that class has its HTTP-01 Challenges answered
// through these gateways. Its spec has the fields of an ACMEIssuer's
// spec.solver.istio, with the same defaults.
type IstioSolverClass struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	// +kubebuilder:default={}
	Spec IstioHTTP01Solver `json:"spec,omitzero"`
}

// +kubebuilder:object:root=true

// IstioSolverClassList is a list of IstioSolverClasses.
type IstioSolverClassList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []IstioSolverClass `json:"items"`
}

func init() {
	kinds.register(&IstioSolverClass{}, &IstioSolverClassList{})
}

// DefaultIstioHTTP01Solver returns the settings an empty spec.solver.istio
// (or IstioSolverClass spec) gets from the CRD's defaults: the routes of an
// IngressClass without spec.parameters use it. A test compares it with what
// the API server defaults.
func DefaultIstioHTTP01Solver() IstioHTTP01Solver {
	temporaryHTTPS := true
	return IstioHTTP01Solver{
		Gateways:             []GatewayWorkloadSelector{{Selector: map[string]string{"istio": "ingressgateway"}}},
		GatewayNamespace:     "istio-system",
		TokenService:         TokenServiceReference{Name: "istio-acme-issuer", Namespace: "istio-acme-issuer", Port: 8089},
		TemporaryHTTPSServer: &temporaryHTTPS,
	}
}
