package kubeutil

import (
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// ForbiddenHint adds fix to err when the API server refused it for lack of
// RBAC permission, so the message names the setting that grants it.
func ForbiddenHint(err error, fix string) error {
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("%w; %s", err, fix)
	}
	return err
}

// Helm values that grant the controller access in more namespaces.
const (
	// SecretsHint is for an issuer's Secrets.
	SecretsHint = "the controller may not access Secrets in that namespace: with the Helm chart, add it to rbac.issuerNamespaces (or set rbac.secretsClusterWide)"
	// RoutesHint is for challenge Gateways and VirtualServices.
	RoutesHint = "the controller may not write Gateways and VirtualServices in that namespace: with the Helm chart, add the gatewayNamespace of the issuer's spec.solver.istio (or of the IstioSolverClass) to rbac.gatewayNamespaces"
	// TemporaryHTTPSHint is for a temporary HTTPS server's Secret.
	TemporaryHTTPSHint = "the controller may not write Secrets in the gateway pods' namespace: with the Helm chart, add it to rbac.temporaryHTTPSNamespaces"
)
