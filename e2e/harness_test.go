package e2e

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/e2e/istiogw"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
	"github.com/istio-acme/istio-acme-issuer/solver"
)

const (
	controllerNamespace = "istio-acme-issuer" // the chart's namespace and Service
	gatewayNamespace    = "istio-system"
	appNamespace        = "apps"
	tokenServicePort    = 8089
)

// binaries are built once per test process by TestMain.
var binaries struct {
	controller  string
	certManager string
}

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

// controllerVersion is stamped into the controller the scenarios run, as
// make build stamps a release's.
const controllerVersion = "v0.0.0-e2e"

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "istio-acme-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binaries.controller = filepath.Join(dir, "istio-acme-issuer")
	binaries.certManager = filepath.Join(dir, "cert-manager-controller")
	certManagerFlags, err := certManagerBuildFlags(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, b := range []struct {
		dir, out, pkg string
		flags         []string
	}{
		{"..", binaries.controller, "./cmd/istio-acme-issuer", []string{"-ldflags", "-X main.version=" + controllerVersion}},
		{".", binaries.certManager, "./cmd/cert-manager-controller", certManagerFlags},
	} {
		cmd := exec.Command("go", append(append([]string{"build"}, b.flags...), "-o", b.out, b.pkg)...)
		cmd.Dir, cmd.Stdout, cmd.Stderr = b.dir, os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n", b.pkg, err)
			return 1
		}
	}
	if err := checkCertManagerVersion(binaries.certManager); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// certManagerBuildFlags builds cert-manager's controllers from the release
// under test (CERT_MANAGER_VERSION, for make test-compat) with a copy of
// this module's go.mod that replaces cert-manager with it; no flags
// without one.
func certManagerBuildFlags(dir string) ([]string, error) {
	if testenv.CertManagerVersion == "" {
		return nil, nil
	}
	modfile := filepath.Join(dir, "go.mod")
	for _, f := range []string{"go.mod", "go.sum"} {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			return nil, err
		}
	}
	edit := exec.Command("go", "mod", "edit", "-modfile="+modfile,
		"-replace=github.com/cert-manager/cert-manager=github.com/cert-manager/cert-manager@"+testenv.CertManagerVersion)
	if out, err := edit.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pinning cert-manager %s: %v\n%s", testenv.CertManagerVersion, err, out)
	}
	return []string{"-mod=mod", "-modfile=" + modfile}, nil
}

// checkCertManagerVersion makes sure the cert-manager binary is built from
// the release under test.
func checkCertManagerVersion(binary string) error {
	want := testenv.CertManagerVersion
	if want == "" {
		return nil
	}
	out, err := exec.Command("go", "version", "-m", binary).Output()
	if err != nil {
		return fmt.Errorf("reading the build of %s: %v", binary, err)
	}
	// go version -m lists the module as "dep MODULE VERSION ...", followed
	// by "=> MODULE VERSION ..." when it is replaced; the last one counts.
	got := ""
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && (f[0] == "dep" || f[0] == "=>") && f[1] == "github.com/cert-manager/cert-manager" {
			got = f[2]
		}
	}
	if got == want {
		fmt.Fprintf(os.Stderr, "cert-manager's controllers are built from %s\n", want)
		return nil
	}
	return fmt.Errorf("%s is not built from cert-manager %s:\n%s", binary, want, out)
}

// cluster is everything a scenario runs against: a real API server, Pebble,
// cert-manager's controllers, our controller as its own process, and an
// ingress gateway whose routing is Istio's own.
type cluster struct {
	t         *testing.T
	api       *testenv.APIServer
	cl        client.Client
	pebble    *testenv.Pebble
	informers cache.Cache
	// gateway is Istio's default ingress gateway; gateways are all of them.
	gateway    *istiogw.Gateway
	gateways   []*istiogw.Gateway
	backends   map[string]string // destination host:port -> loopback address
	tokenPort  int
	controller *testenv.Process
	// certManager is cert-manager's controllers.
	certManager *testenv.Process
	// metricsAddr serves the controller's Prometheus metrics.
	metricsAddr string
	// certManagerMetricsAddr serves cert-manager's.
	certManagerMetricsAddr string
	// moreControllerArgs are flags the scenario adds to our controller's.
	moreControllerArgs []string
	mu                 sync.Mutex
	ourGateways        []*istionet.Gateway // every Gateway the controller created
	// created is when each Certificate was sent to the API server; its
	// creationTimestamp has only whole seconds.
	created map[string]time.Time
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	return startClusterWith(t, clusterOptions{controller: true})
}

// clusterOptions vary the stack a scenario runs on.
type clusterOptions struct {
	// controller starts our controller (one replica).
	controller bool
	// api configures the API server.
	api testenv.APIServerOptions
	// pebbleEnv adds environment variables to Pebble.
	pebbleEnv []string
	// certManagerArgs adds flags to cert-manager's controllers.
	certManagerArgs []string
	// controllerArgs adds flags to our controller.
	controllerArgs []string
	// noZoneGrant leaves out the platform's grant of the scenarios' zones
	// to the apps namespace.
	noZoneGrant bool
	// chartValues are more Helm values for the chart's RBAC.
	chartValues []string
}

func startClusterWith(t *testing.T, o clusterOptions) *cluster {
	t.Helper()
	c := &cluster{t: t, created: map[string]time.Time{}, moreControllerArgs: o.controllerArgs}
	c.api = testenv.StartAPIServerWith(t, o.api)
	c.cl = c.api.Client
	for _, ns := range []string{controllerNamespace, gatewayNamespace, appNamespace, "cert-manager"} {
		c.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}
	// The platform grants the apps namespace (and the gateway pods' one,
	// where the Gateway shim's Certificates live) the zones the scenarios
	// use, as a platform grants its app teams their zones: the scenarios
	// about routing then need no Gateway to list a name first. The tenancy
	// scenarios run in namespaces of their own, without a grant.
	if !o.noZoneGrant {
		c.create(&v1alpha1.HostnameGrant{
			ObjectMeta: metav1.ObjectMeta{Name: "apps-zones"},
			Spec: v1alpha1.HostnameGrantSpec{
				Namespaces: []string{appNamespace, gatewayNamespace},
				Zones:      []string{"example.com", "test"},
			},
		})
	}
	// The token Service, as the Helm chart installs it.
	c.create(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: controllerNamespace, Name: "istio-acme-issuer"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app.kubernetes.io/name": "istio-acme-issuer"},
			Ports:    []corev1.ServicePort{{Name: "http-acme", Port: tokenServicePort}},
		},
	})

	// The ingress gateway, as Istio installs it. Its Service's cluster IP
	// is a loopback address; the simulated gateway listens on its ports 80
	// and 443, and Pebble's DNS resolves every name to it, as public DNS
	// resolves to a gateway's load balancer.
	c.informers = c.startCache()
	c.tokenPort = testenv.FreePort(t)
	c.backends = map[string]string{
		fmt.Sprintf("istio-acme-issuer.%s.svc.cluster.local:%d", controllerNamespace, tokenServicePort): testenv.Addr(c.tokenPort),
	}
	var gatewayIP string
	c.gateway, gatewayIP = c.startGateway(gatewayNamespace, "istio-ingressgateway", map[string]string{"istio": "ingressgateway", "app": "istio-ingressgateway"})
	c.pebble = testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: 80, ResolveTo: gatewayIP, Env: o.pebbleEnv})

	c.applyChartRBAC(o.chartValues...)
	// cert-manager runs as its own ServiceAccount with the RBAC of its own
	// Helm chart plus ours, so it does nothing here it could not do in a
	// cluster. (Whether it may approve our requests is enforced by its
	// webhook, which does not run here; the chart tests ask the API server
	// the webhook's question.)
	c.api.Apply(t, "cert-manager", testenv.RBACObjects(testenv.RenderChart(t,
		filepath.Join(testenv.CertManagerDir(t), "deploy/charts/cert-manager"),
		"cert-manager", "cert-manager")))
	c.certManagerMetricsAddr = testenv.Addr(testenv.FreePort(t))
	c.certManager = testenv.StartProcess(t, "cert-manager", binaries.certManager, append([]string{
		"--kubeconfig", c.api.KubeconfigAs(t, "cert-manager", "cert-manager"), "--cluster-resource-namespace", "cert-manager", "-v", "2",
		"--metrics-listen-address", c.certManagerMetricsAddr,
		// Its HTTP-01 self-check resolves names as the CA does.
		"--acme-http01-solver-nameservers", c.pebble.DNSAddr,
	}, o.certManagerArgs...))
	if o.controller {
		c.startController()
	}
	return c
}

// startGateway adds an ingress gateway workload: a pod with the labels, the
// Service in front of it (ports 80 and 443 to the pod's 8080 and 8443, as
// in Istio's default install), and a gateway simulating Istio's routing for
// that pod on the Service's cluster IP. It returns the gateway and the IP.
func (c *cluster) startGateway(namespace, name string, labels map[string]string) (*istiogw.Gateway, string) {
	c.t.Helper()
	c.create(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name + "-0", Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "istio-proxy", Image: "istio/proxyv2"}}},
	})
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{
			{Name: "http2", Port: 80, TargetPort: intstr.FromInt32(8080)},
			{Name: "https", Port: 443, TargetPort: intstr.FromInt32(8443)},
		}},
	}
	c.create(svc)
	gw := &istiogw.Gateway{
		Labels:     labels,
		Namespace:  namespace,
		PodPort:    8080,
		TLSPodPort: 8443,
		Reader:     c.informers,
		APIReader:  c.cl,
		Backends:   maps.Clone(c.backends),
	}
	gw.Start(c.t, net.JoinHostPort(svc.Spec.ClusterIP, "80"))
	gw.StartTLS(c.t, net.JoinHostPort(svc.Spec.ClusterIP, "443"))
	c.gateways = append(c.gateways, gw)
	return gw, svc.Spec.ClusterIP
}

// setBackend makes every gateway forward destination to addr.
func (c *cluster) setBackend(destination, addr string) {
	c.backends[destination] = addr
	for _, gw := range c.gateways {
		gw.SetBackend(destination, addr)
	}
}

// startCache starts an informer cache of the API server for the test's
// reads, stopped when the test ends.
func (c *cluster) startCache() cache.Cache {
	c.t.Helper()
	informers, err := cache.New(c.api.Config, cache.Options{Scheme: c.api.Env.Scheme})
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := informers.Start(ctx); err != nil {
			c.t.Errorf("informer cache: %v", err)
		}
	}()
	c.t.Cleanup(func() {
		cancel()
		<-done
	})
	if !informers.WaitForCacheSync(ctx) {
		c.t.Fatal("the informer cache did not start")
	}
	// Start the informers the gateway uses now, not on its first request.
	for _, l := range []client.ObjectList{&istionet.GatewayList{}, &istionet.VirtualServiceList{}, &corev1.ServiceList{}} {
		if err := informers.List(ctx, l); err != nil {
			c.t.Fatal(err)
		}
	}
	// Remember every Gateway the controller creates, however briefly it
	// lives, to tell attaching to a user's Gateway from adding our own.
	gwInformer, err := informers.GetInformer(ctx, &istionet.Gateway{})
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := gwInformer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{AddFunc: func(obj any) {
		gw, ok := obj.(*istionet.Gateway)
		if !ok || gw.Labels[solver.LabelManagedBy] != solver.ManagedByValue {
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		c.ourGateways = append(c.ourGateways, gw.DeepCopy())
	}}); err != nil {
		c.t.Fatal(err)
	}
	return informers
}

// createdGatewayFor reports whether the controller ever created a Gateway
// of its own with a server for host.
func (c *cluster) createdGatewayFor(host string) bool {
	return len(c.ourGatewaySelectorsFor(host)) > 0
}

// ourGatewaySelectorsFor returns the selectors of the Gateways the
// controller created with a server for host, as "k=v" strings.
func (c *cluster) ourGatewaySelectorsFor(host string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, gw := range c.ourGateways {
		// Our servers admit the requester's routes only: "ns/host".
		if slices.ContainsFunc(gw.Spec.Servers, func(s *istioapi.Server) bool {
			return slices.ContainsFunc(s.Hosts, func(h string) bool { return h == host || strings.HasSuffix(h, "/"+host) })
		}) {
			out = append(out, labels.FormatLabels(gw.Spec.Selector))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// chartValues are the Helm values the tests install the chart's RBAC with:
// the namespaced ACMEIssuers live in apps, and temporary HTTPS servers'
// Secrets go to the gateway's namespace.
var chartValues = []string{
	"rbac.issuerNamespaces={" + appNamespace + "}",
	"rbac.temporaryHTTPSNamespaces={" + gatewayNamespace + "}",
}

// applyChartRBAC installs the ServiceAccount, roles and bindings of the
// Helm chart, rendered with chartValues and then set, in the namespaces
// that exist; the controller runs as that ServiceAccount.
func (c *cluster) applyChartRBAC(set ...string) {
	c.t.Helper()
	chart := filepath.Join(testenv.RepoRoot(c.t), "charts/istio-acme-issuer")
	var namespaces corev1.NamespaceList
	if err := c.cl.List(context.Background(), &namespaces); err != nil {
		c.t.Fatal(err)
	}
	exists := map[string]bool{"": true}
	for _, ns := range namespaces.Items {
		exists[ns.Name] = true
	}
	objs := testenv.RenderChart(c.t, chart, "istio-acme-issuer", controllerNamespace, append(slices.Clone(chartValues), set...)...)
	c.api.Apply(c.t, controllerNamespace, inExistingNamespaces(testenv.RBACObjects(objs), exists))
}

// inExistingNamespaces leaves out the objects in namespaces not in exists.
func inExistingNamespaces(objs []*unstructured.Unstructured, exists map[string]bool) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if exists[o.GetNamespace()] {
			out = append(out, o)
		}
	}
	return out
}

// startController starts our controller as its own process, as the
// chart's ServiceAccount, and waits until it is ready.
func (c *cluster) startController() {
	c.t.Helper()
	probe := testenv.Addr(testenv.FreePort(c.t))
	c.metricsAddr = testenv.Addr(testenv.FreePort(c.t))
	c.controller = testenv.StartProcess(c.t, "istio-acme-issuer", binaries.controller, append(c.controllerArgs(testenv.Addr(c.tokenPort), c.metricsAddr, probe), c.moreControllerArgs...))
	c.eventually("the controller to be ready", 30*time.Second, func() (bool, string) {
		if exited, err := c.controller.Exited(); exited {
			c.t.Fatalf("controller exited: %v", err)
		}
		return probeReady(probe)
	})
}

// controllerArgs are the flags our controller runs with here, as the
// chart's ServiceAccount, with its token server, metrics and probes on the
// given addresses.
func (c *cluster) controllerArgs(tokenAddr, metricsAddr, probeAddr string) []string {
	return []string{
		"--kubeconfig", c.api.KubeconfigAs(c.t, controllerNamespace, "istio-acme-issuer"),
		"--cluster-resource-namespace", controllerNamespace,
		"--token-server-address", tokenAddr,
		"--metrics-bind-address", metricsAddr,
		"--health-probe-bind-address", probeAddr,
		"--zap-log-level", "debug", "--zap-time-encoding", "rfc3339nano",
		// For issuers with selfCheckThroughDNS: the names the CA resolves.
		"--self-check-nameservers", c.pebble.DNSAddr,
	}
}

// probeReady asks a controller's readiness probe, as the kubelet does.
func probeReady(probeAddr string) (bool, string) {
	cl := &http.Client{Timeout: time.Second}
	res, err := cl.Get("http://" + probeAddr + "/readyz")
	if err != nil {
		return false, err.Error()
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	return res.StatusCode == http.StatusOK, res.Status
}

func (c *cluster) create(obj client.Object) {
	c.t.Helper()
	if err := c.cl.Create(context.Background(), obj); err != nil {
		c.t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

// eventually polls cond every 20 ms until it holds, failing the test with
// cond's last word after timeout.
func (c *cluster) eventually(what string, timeout time.Duration, cond func() (bool, string)) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %s waiting for %s; last state: %s", timeout, what, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// clusterIssuer creates an ACMEClusterIssuer for Pebble and waits until it
// is Ready.
func (c *cluster) clusterIssuer(name string, solverSpec v1alpha1.ACMESolver) *v1alpha1.ACMEClusterIssuer {
	c.t.Helper()
	return c.clusterIssuerAt(name, c.pebble.DirectoryURL, solverSpec)
}

// clusterIssuerAt is clusterIssuer for an ACME directory in front of Pebble
// (such as a fault-injecting proxy).
func (c *cluster) clusterIssuerAt(name, directory string, solverSpec v1alpha1.ACMESolver, more ...func(*v1alpha1.ACMEIssuerSpec)) *v1alpha1.ACMEClusterIssuer {
	c.t.Helper()
	iss := &v1alpha1.ACMEClusterIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.ACMEIssuerSpec{
			Server:              directory,
			Email:               "platform@example.org",
			CABundle:            c.pebble.ServerCAPEM,
			PrivateKeySecretRef: v1alpha1.SecretKeySelector{Name: name + "-account"},
			Solver:              solverSpec,
		},
	}
	for _, set := range more {
		set(&iss.Spec)
	}
	c.create(iss)
	c.eventually("ACMEClusterIssuer "+name+" to be Ready", 30*time.Second, func() (bool, string) {
		got, ready, why := c.issuerReady(name)
		return ready != nil && ready.Status == metav1.ConditionTrue && got.Status.Account != nil, why
	})
	return iss
}

// issuerReady reads an ACMEClusterIssuer and its Ready condition (nil when
// it has none yet), and says where it stands.
func (c *cluster) issuerReady(name string) (*v1alpha1.ACMEClusterIssuer, *metav1.Condition, string) {
	got := &v1alpha1.ACMEClusterIssuer{}
	if err := c.cl.Get(context.Background(), client.ObjectKey{Name: name}, got); err != nil {
		return got, nil, err.Error()
	}
	for i, cond := range got.Status.Conditions {
		if cond.Type == "Ready" {
			return got, &got.Status.Conditions[i], cond.Message
		}
	}
	return got, nil, "no Ready condition"
}

// certificate creates a Certificate issued by an ACMEClusterIssuer.
func (c *cluster) certificate(name, issuer string, dnsNames ...string) *cmapi.Certificate {
	c.t.Helper()
	return c.certificateOf(name, "ACMEClusterIssuer", issuer, dnsNames...)
}

// certificateOf creates a Certificate issued by an issuer of ours of the
// given kind.
func (c *cluster) certificateOf(name, kind, issuer string, dnsNames ...string) *cmapi.Certificate {
	c.t.Helper()
	return c.certificateWith(cmmeta.IssuerReference{Group: "istio-acme.io", Kind: kind, Name: issuer}, name, dnsNames...)
}

// certificateWith creates a Certificate in the apps namespace, its Secret
// named after it, issued by issuer.
func (c *cluster) certificateWith(issuer cmmeta.IssuerReference, name string, dnsNames ...string) *cmapi.Certificate {
	c.t.Helper()
	return c.teamCertificate(appNamespace, name, issuer, dnsNames...)
}

// waitReady waits until the Certificate is Ready and returns how long that
// took from its creation.
func (c *cluster) waitReady(crt *cmapi.Certificate, timeout time.Duration) time.Duration {
	c.t.Helper()
	start, ok := c.created[crt.Namespace+"/"+crt.Name]
	if !ok {
		start = time.Now()
	}
	var readyAt time.Time
	c.eventually("Certificate "+crt.Name+" to be Ready", timeout, func() (bool, string) {
		got := &cmapi.Certificate{}
		if err := c.cl.Get(context.Background(), client.ObjectKeyFromObject(crt), got); err != nil {
			return false, err.Error()
		}
		for _, cond := range got.Status.Conditions {
			if cond.Type == cmapi.CertificateConditionReady {
				if cond.Status == cmmeta.ConditionTrue {
					readyAt = time.Now()
					return true, ""
				}
				return false, c.requestState(crt) + " / Certificate: " + cond.Message
			}
		}
		return false, c.requestState(crt)
	})
	return readyAt.Sub(start)
}

// waitReadyQuiet is waitReady for use from several goroutines: it reports
// a timeout as a test error instead of stopping the test.
func (c *cluster) waitReadyQuiet(crt *cmapi.Certificate, timeout time.Duration) time.Duration {
	start, ok := c.created[crt.Namespace+"/"+crt.Name]
	if !ok {
		start = time.Now()
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		got := &cmapi.Certificate{}
		if err := c.cl.Get(context.Background(), client.ObjectKeyFromObject(crt), got); err == nil && isReady(got) {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Errorf("Certificate %s not Ready after %s: %s", crt.Name, timeout, c.requestState(crt))
	return timeout
}

// requestState summarizes the Certificate's newest CertificateRequest.
func (c *cluster) requestState(crt *cmapi.Certificate) string {
	var list cmapi.CertificateRequestList
	if err := c.cl.List(context.Background(), &list, client.InNamespace(crt.Namespace)); err != nil {
		return err.Error()
	}
	var parts []string
	for _, cr := range list.Items {
		if !metav1.IsControlledBy(&cr, crt) {
			continue
		}
		for _, cond := range cr.Status.Conditions {
			parts = append(parts, fmt.Sprintf("%s %s=%s (%s: %s)", cr.Name, cond.Type, cond.Status, cond.Reason, cond.Message))
		}
	}
	return strings.Join(parts, "; ")
}

// verifySecret checks that the Certificate's Secret holds a chain to Pebble's
// root for exactly dnsNames, and returns the leaf.
func (c *cluster) verifySecret(crt *cmapi.Certificate, dnsNames ...string) *x509.Certificate {
	c.t.Helper()
	return c.verifySecretTo(crt, c.pebble.RootPEM(c.t), dnsNames...)
}

// verifySecretTo is verifySecret for another CA's root.
func (c *cluster) verifySecretTo(crt *cmapi.Certificate, rootPEM []byte, dnsNames ...string) *x509.Certificate {
	c.t.Helper()
	sec := &corev1.Secret{}
	if err := c.cl.Get(context.Background(), client.ObjectKey{Namespace: crt.Namespace, Name: crt.Spec.SecretName}, sec); err != nil {
		c.t.Fatalf("reading Secret %s: %v", crt.Spec.SecretName, err)
	}
	var chain []*x509.Certificate
	rest := sec.Data[corev1.TLSCertKey]
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			c.t.Fatalf("Secret %s holds an unparsable certificate: %v", sec.Name, err)
		}
		chain = append(chain, cert)
	}
	if len(chain) < 2 {
		c.t.Fatalf("Secret %s holds %d certificates, want the leaf and the CA's intermediate", sec.Name, len(chain))
	}
	if len(sec.Data[corev1.TLSPrivateKeyKey]) == 0 {
		c.t.Fatalf("Secret %s has no private key", sec.Name)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		c.t.Fatal("the CA's root is not PEM")
	}
	inter := x509.NewCertPool()
	for _, ic := range chain[1:] {
		inter.AddCert(ic)
	}
	leaf := chain[0]
	for _, name := range dnsNames {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter}); err != nil {
			c.t.Fatalf("the certificate does not verify for %s against the CA's root: %v", name, err)
		}
	}
	got := slices.Sorted(slices.Values(leaf.DNSNames))
	want := slices.Sorted(slices.Values(dnsNames))
	if !slices.Equal(got, want) {
		c.t.Fatalf("certificate SANs %v, want %v", got, want)
	}
	return leaf
}

// ourObjectsLeft lists the Istio objects and challenges we created that
// still exist.
func (c *cluster) ourObjectsLeft() []string {
	var left []string
	ctx := context.Background()
	sel := client.MatchingLabels{solver.LabelManagedBy: solver.ManagedByValue}
	var gws istionet.GatewayList
	var vss istionet.VirtualServiceList
	var chs v1alpha1.ACMEChallengeList
	if err := c.cl.List(ctx, &gws, sel); err != nil {
		return []string{err.Error()}
	}
	if err := c.cl.List(ctx, &vss, sel); err != nil {
		return []string{err.Error()}
	}
	if err := c.cl.List(ctx, &chs); err != nil {
		return []string{err.Error()}
	}
	for _, o := range gws.Items {
		left = append(left, "Gateway "+o.Namespace+"/"+o.Name)
	}
	for _, o := range vss.Items {
		left = append(left, "VirtualService "+o.Namespace+"/"+o.Name)
	}
	for _, o := range chs.Items {
		left = append(left, "ACMEChallenge "+o.Namespace+"/"+o.Name)
	}
	return left
}

func (c *cluster) waitNothingLeft() {
	c.t.Helper()
	c.eventually("our Istio objects and challenges to be removed", 20*time.Second, func() (bool, string) {
		left := c.ourObjectsLeft()
		return len(left) == 0, strings.Join(left, ", ")
	})
}

// olderThanWhatFollows waits for the next whole second: creation times
// have whole seconds, and Istio orders VirtualServices created in the same
// second by name, so a user's route that must come before the challenge's
// (as an existing route does) needs a second of its own.
func (c *cluster) olderThanWhatFollows() {
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
}

// metric scrapes the controller's metrics endpoint and returns the samples
// of one metric by their label string (`outcome="valid",...`).
func (c *cluster) metric(name string) map[string]float64 {
	c.t.Helper()
	res, err := http.Get("http://" + c.metricsAddr + "/metrics")
	if err != nil {
		c.t.Fatalf("scraping metrics: %v", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		labels, value := "", rest
		if strings.HasPrefix(rest, "{") {
			labels, value, _ = strings.Cut(rest[1:], "} ")
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			c.t.Fatalf("metric line %q: %v", line, err)
		}
		out[labels] += n
	}
	return out
}

// metricSum adds the samples of a metric whose labels contain every one of
// want (such as `outcome="valid"`).
func (c *cluster) metricSum(name string, want ...string) float64 {
	c.t.Helper()
	var sum float64
	for labels, n := range c.metric(name) {
		if !slices.ContainsFunc(want, func(w string) bool { return !strings.Contains(labels, w) }) {
			sum += n
		}
	}
	return sum
}

// cmctl runs cmctl against the API server.
func (c *cluster) cmctl(args ...string) string {
	c.t.Helper()
	cmd := exec.Command(testenv.Tool(c.t, "cmctl"), append(args, "--kubeconfig", c.api.Kubeconfig)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("cmctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
