package solver

import (
	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

// settingsField names where a challenge's routing setting is configured,
// for messages that tell the user what to change: the issuer's
// spec.solver.istio for our issuers, the IstioSolverClass of the
// IngressClass for a cert-manager Challenge.
func settingsField(ch *v1alpha1.ACMEChallenge, field string) string {
	switch {
	case ch.Spec.SolverClass != "":
		return "IstioSolverClass " + ch.Spec.SolverClass + " spec." + field
	case ch.Spec.IngressClass != "":
		return "spec." + field + " of an IstioSolverClass named by IngressClass " + ch.Spec.IngressClass + "'s spec.parameters (the class has none: defaults apply)"
	default:
		return "the issuer's spec.solver.istio." + field
	}
}
