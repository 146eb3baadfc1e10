package testenv

import (
	"testing"
)

// controllers are the kube-controller-manager controllers a test cluster
// runs: the garbage collector, so that deleting an owner deletes its
// dependents through ownerReferences (a Certificate its CertificateRequests,
// a request its ACMEOrder, an order its ACMEChallenges), and the namespace
// controller, so that a deleted namespace is emptied and goes away.
const controllers = "garbage-collector-controller,namespace-controller"

// startControllerManager runs kube-controller-manager with those
// controllers against the API server whose admin kubeconfig is given, until
// the test ends (before the API server stops). It serves nothing: the
// tests watch its effects, not its endpoints.
func startControllerManager(t testing.TB, kubeconfig string) *Process {
	t.Helper()
	return StartProcess(t, "kube-controller-manager", Tool(t, "kube-controller-manager"), []string{
		"--kubeconfig=" + kubeconfig,
		"--controllers=" + controllers,
		"--leader-elect=false",
		"--secure-port=0",
		// Each test's API server is small: a few workers suffice.
		"--concurrent-gc-syncs=5",
		"--concurrent-namespace-syncs=2",
		"--v=1",
	})
}
