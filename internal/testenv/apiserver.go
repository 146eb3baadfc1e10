package testenv

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	cmacme "github.com/cert-manager/cert-manager/pkg/apis/acme/v1"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/go-logr/logr"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

var quietControllerRuntime sync.Once

// ServiceCIDR is the API server's range of Service cluster IPs: loopback
// addresses, each unique to one Service of one test's API server.
const ServiceCIDR = "127.96.0.0/16"

// APIServer is a running kube-apiserver with etcd.
type APIServer struct {
	// Config connects as a cluster administrator.
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file for Config.
	Kubeconfig string
	// Client is an uncached client using Scheme.
	Client client.Client
	Env    *envtest.Environment
	// ControllerManager runs the garbage collector and the namespace
	// controller, as in a cluster.
	ControllerManager *Process
	// AuditLogPath is the API server's audit log (JSON lines), when
	// APIServerOptions.AuditPolicy was set.
	AuditLogPath string
	// restarted is the kube-apiserver started by Restart, if any.
	restarted *Process
}

// Scheme knows core Kubernetes, cert-manager (with its ACME kinds), Istio
// networking and our kinds.
func Scheme(t testing.TB) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, cmapi.AddToScheme, cmacme.AddToScheme, istionet.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// crdPaths are the CRDs the tests install: ours as generated, cert-manager's
// from its module, and Istio's from istio.io/api, less those o leaves out.
func crdPaths(t testing.TB, o APIServerOptions) []string {
	var paths []string
	if !o.WithoutOurCRDs {
		paths = append(paths, filepath.Join(RepoRoot(t), "deploy/crds"))
	}
	if !o.WithoutCertManagerCRDs {
		paths = append(paths, filepath.Join(CertManagerDir(t), "deploy/crds"))
	}
	return append(paths, filepath.Join(ModuleDir(t, ".", "istio.io/api"), "kubernetes/customresourcedefinitions.gen.yaml"))
}

// APIServerOptions configure a test API server.
type APIServerOptions struct {
	// AuditPolicy, when set, is an audit.k8s.io/v1 Policy in YAML; the API
	// server writes its audit log as JSON lines to APIServer.AuditLogPath.
	AuditPolicy string
	// WithoutOurCRDs leaves this project's CRDs out, as on a cluster where
	// the chart was never installed; cert-manager's and Istio's are there.
	WithoutOurCRDs bool
	// WithoutCertManagerCRDs leaves cert-manager's CRDs out.
	WithoutCertManagerCRDs bool
}

// StartAPIServer starts kube-apiserver and etcd with every CRD installed,
// and kube-controller-manager's garbage collector and namespace controller,
// and stops them when the test ends.
func StartAPIServer(t testing.TB) *APIServer {
	t.Helper()
	return StartAPIServerWith(t, APIServerOptions{})
}

// StartAPIServerWith is StartAPIServer with options.
func StartAPIServerWith(t testing.TB, o APIServerOptions) *APIServer {
	t.Helper()
	// The tests' own controller-runtime clients and caches log nothing a
	// test reads (reflector retries while an API server stops); without a
	// logger, controller-runtime prints a warning with a stack trace.
	quietControllerRuntime.Do(func() { ctrllog.SetLogger(logr.Discard()) })
	env := &envtest.Environment{
		Scheme:                   Scheme(t),
		CRDDirectoryPaths:        crdPaths(t, o),
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	env.ControlPlane.GetAPIServer().Path = Tool(t, "kube-apiserver")
	// Services get loopback cluster IPs, so a test can serve a Service's
	// address itself, as kube-proxy would route it.
	env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", ServiceCIDR)
	env.ControlPlane.Etcd = &envtest.Etcd{Path: Tool(t, "etcd")}
	var auditLog string
	if o.AuditPolicy != "" {
		dir := t.TempDir()
		policy := filepath.Join(dir, "audit-policy.yaml")
		if err := os.WriteFile(policy, []byte(o.AuditPolicy), 0o600); err != nil {
			t.Fatal(err)
		}
		auditLog = filepath.Join(dir, "audit.log")
		args := env.ControlPlane.GetAPIServer().Configure()
		args.Set("audit-policy-file", policy)
		args.Set("audit-log-path", auditLog)
		args.Set("audit-log-format", "json")
		args.Set("audit-log-mode", "blocking")
		// Never rotated (the API server rotates at 100 MB by default, which
		// a long bench reaches): readers keep their place in one file.
		args.Set("audit-log-maxsize", "1000000")
	}
	before, err := Children()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting kube-apiserver and etcd: %v", err)
	}
	started, err := startedSince(before, Tool(t, "kube-apiserver"), Tool(t, "etcd"))
	if err == nil {
		err = guardChildren(started...)
	}
	if err != nil {
		_ = env.Stop() // best effort: the test stops here
		t.Fatalf("guarding kube-apiserver and etcd against outliving the test binary: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping kube-apiserver and etcd: %v", err)
		}
		releaseChildren(started...)
	})
	cfg.QPS, cfg.Burst = 200, 400

	admin, err := env.AddUser(envtest.User{Name: "test-admin", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	a := &APIServer{Config: cfg, Kubeconfig: path, Client: cl, Env: env, AuditLogPath: auditLog}
	a.ControllerManager = startControllerManager(t, path)
	return a
}

// CreateNamespaces creates namespaces in the API server.
func (a *APIServer) CreateNamespaces(t testing.TB, names ...string) {
	t.Helper()
	for _, ns := range names {
		if err := a.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatalf("creating namespace %s: %v", ns, err)
		}
	}
}
