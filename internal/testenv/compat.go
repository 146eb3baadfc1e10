package testenv

import (
	"encoding/json"
	"os"
	"os/exec"
	"testing"
)

// The versions `make test-compat` runs the tests against, from its
// environment: KUBE_VERSION is the Kubernetes version of the kube-apiserver
// that hack/tools/build.sh gives for KUBE_GROUP, and CERT_MANAGER_VERSION
// the cert-manager release whose controllers, CRDs and chart the tests use.
// Unset, they are the versions the modules pin.
var (
	// KubeVersion is the Kubernetes version charts are rendered for: the
	// test API server's.
	KubeVersion = envOr("KUBE_VERSION", "1.36.2")
	// CertManagerVersion is the cert-manager release under test, or "" for
	// the one the module requires.
	CertManagerVersion = os.Getenv("CERT_MANAGER_VERSION")
)

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// CertManagerDir is the source of the cert-manager release under test
// (its CRDs and Helm chart): CERT_MANAGER_VERSION's, downloaded from the
// module proxy, or the one the module requires.
func CertManagerDir(t testing.TB) string {
	t.Helper()
	const module = "github.com/cert-manager/cert-manager"
	if CertManagerVersion == "" {
		return ModuleDir(t, ".", module)
	}
	out, err := exec.Command("go", "mod", "download", "-json", module+"@"+CertManagerVersion).Output()
	if err != nil {
		t.Fatalf("downloading %s@%s: %v\n%s", module, CertManagerVersion, err, out)
	}
	var m struct{ Dir string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		t.Fatalf("downloading %s@%s: no directory in %s", module, CertManagerVersion, out)
	}
	return m.Dir
}
