// Command istio-acme-issuer is a cert-manager external issuer that obtains
// certificates from ACME CAs by answering HTTP-01 challenges through Istio
// Gateways and VirtualServices.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	cmacme "github.com/cert-manager/cert-manager/pkg/apis/acme/v1"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/kubeutil"
	"github.com/istio-acme/istio-acme-issuer/internal/metrics"
	"github.com/istio-acme/istio-acme-issuer/issuer"
	"github.com/istio-acme/istio-acme-issuer/shim"
	"github.com/istio-acme/istio-acme-issuer/solver"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

type options struct {
	kubeconfig               string
	clusterResourceNamespace string
	tokenServerAddress       string
	metricsAddress           string
	probeAddress             string
	pprofAddress             string
	leaderElect              bool
	leaderElectionNamespace  string
	leaderElectionID         string
	maxRetryDuration         time.Duration
	workers                  int
	orphanSweepInterval      time.Duration
	kubeAPIQPS               float64
	kubeAPIBurst             int
	selfCheckNameservers     []string
	certManagerChallenges    bool
	tokenService             v1alpha1.TokenServiceReference
	gatewayShim              bool
	renewalInfo              bool
	renewalInfoMinInterval   time.Duration
	renewalInfoMaxInterval   time.Duration
	gatewayShimNamespaces    []string
	// istioMeshConfig is istiod's mesh configuration ConfigMap, or empty.
	istioMeshConfig         client.ObjectKey
	scopeGatewayToNamespace bool
	// namespacedIssuers confines namespaced ACMEIssuers; its token
	// Services default to --token-service.
	namespacedIssuers solver.NamespacedIssuerPolicy
	zap               zap.Options
	// showVersion prints the version and exits.
	showVersion bool
}

func parseFlags(args []string) (options, error) {
	o := options{}
	fs := flag.NewFlagSet("istio-acme-issuer", flag.ContinueOnError)
	defaultNS := os.Getenv("POD_NAMESPACE")
	if defaultNS == "" {
		defaultNS = "istio-acme-issuer"
	}
	fs.StringVar(&o.clusterResourceNamespace, "cluster-resource-namespace", defaultNS,
		"Namespace of the Secrets (account keys, external account binding keys) of ACMEClusterIssuers. Defaults to $POD_NAMESPACE, else istio-acme-issuer.")
	fs.StringVar(&o.tokenServerAddress, "token-server-address", ":8089",
		"Address on which every replica answers HTTP-01 challenges; the token Service's target port.")
	fs.StringVar(&o.metricsAddress, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint; \"0\" disables it.")
	fs.StringVar(&o.probeAddress, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz probes.")
	fs.StringVar(&o.pprofAddress, "pprof-bind-address", "0",
		"Address of Go's pprof endpoints (/debug/pprof/), for profiling; \"0\" (the default) turns them off. They expose the process's memory: bind to localhost and port-forward.")
	fs.BoolVar(&o.leaderElect, "leader-elect", true,
		"Elect a leader among replicas to place orders and publish routes; every replica answers challenges regardless.")
	fs.StringVar(&o.leaderElectionNamespace, "leader-election-namespace", "",
		"Namespace of the leader election Lease. Defaults to --cluster-resource-namespace.")
	fs.StringVar(&o.leaderElectionID, "leader-election-id", "istio-acme-issuer-leader", "Name of the leader election Lease.")
	fs.DurationVar(&o.maxRetryDuration, "max-retry-duration", time.Hour,
		"How long a CertificateRequest is retried after errors that may pass (network, CA outages) before it is failed.")
	fs.IntVar(&o.workers, "workers", 20, "CertificateRequests, and challenges, worked on at once.")
	fs.DurationVar(&o.orphanSweepInterval, "orphan-sweep-interval", 10*time.Minute,
		"How often the leader deletes challenge Gateways and VirtualServices whose challenge is gone.")
	fs.Float64Var(&o.kubeAPIQPS, "kube-api-qps", 200, "Requests per second to the API server (client-side limit).")
	fs.IntVar(&o.kubeAPIBurst, "kube-api-burst", 400, "Burst of requests to the API server (client-side limit).")
	fs.Func("self-check-nameservers",
		"Comma-separated DNS servers (host:port) that the self-check through DNS (selfCheckThroughDNS on an issuer) resolves challenged hosts with, instead of the system's resolver; for clusters whose DNS answers differently than public DNS.",
		func(v string) error {
			for _, ns := range strings.Split(v, ",") {
				ns = strings.TrimSpace(ns)
				if _, _, err := net.SplitHostPort(ns); err != nil {
					return fmt.Errorf("%q is not host:port (for example 1.1.1.1:53): %w", ns, err)
				}
				o.selfCheckNameservers = append(o.selfCheckNameservers, ns)
			}
			return nil
		})
	fs.BoolVar(&o.certManagerChallenges, "cert-manager-challenges", true,
		"Answer the HTTP-01 Challenges of cert-manager's own ACME issuers whose http01.ingress solver names an IngressClass with spec.controller istio-acme.io/solver. Needs cert-manager's acme.cert-manager.io CRDs.")
	o.tokenService = v1alpha1.DefaultIstioHTTP01Solver().TokenService
	fs.Func("token-service",
		"The Service in front of the token server, as namespace/name:port (default istio-acme-issuer/istio-acme-issuer:8089): where the routes of IngressClasses without spec.parameters send the CA. The Helm chart sets it to its own Service.",
		func(v string) error {
			ref, err := parseServiceRef(v)
			o.tokenService = ref
			return err
		})
	fs.BoolVar(&o.gatewayShim, "gateway-shim", true,
		"Keep a cert-manager Certificate for every HTTPS server of each networking.istio.io Gateway annotated with cert-manager.io/cluster-issuer or cert-manager.io/issuer, as cert-manager's ingress-shim does for Ingresses.")
	fs.Func("gateway-shim-namespaces",
		"Comma-separated namespaces whose Gateways the Gateway shim serves (default: all).",
		func(v string) error {
			for _, ns := range strings.Split(v, ",") {
				if ns = strings.TrimSpace(ns); ns != "" {
					o.gatewayShimNamespaces = append(o.gatewayShimNamespaces, ns)
				}
			}
			return nil
		})
	o.namespacedIssuers.GatewayNamespaces = []string{v1alpha1.DefaultIstioHTTP01Solver().GatewayNamespace}
	fs.Func("namespaced-issuer-gateway-namespaces",
		"Comma-separated namespaces a namespaced ACMEIssuer's spec.solver.istio.gatewayNamespace may name (default istio-system): its author is a tenant, and the controller creates Gateways there with its own rights.",
		func(v string) error {
			o.namespacedIssuers.GatewayNamespaces = splitList(v, ",")
			return nil
		})
	o.namespacedIssuers.GatewaySelectors = []map[string]string{v1alpha1.DefaultIstioHTTP01Solver().Gateways[0].Selector}
	fs.Func("namespaced-issuer-gateway-selectors",
		"Gateway pod selectors a namespaced ACMEIssuer's spec.solver.istio.gateways may use, each exactly: selectors separated by ';', labels by ',' (default istio=ingressgateway).",
		func(v string) error {
			o.namespacedIssuers.GatewaySelectors = nil
			for _, sel := range splitList(v, ";") {
				m, err := labels.ConvertSelectorToLabelsMap(sel)
				if err != nil || len(m) == 0 {
					return fmt.Errorf("%q is not a selector of labels (for example istio=ingressgateway,istio.io/rev=canary): %v", sel, err)
				}
				o.namespacedIssuers.GatewaySelectors = append(o.namespacedIssuers.GatewaySelectors, m)
			}
			return nil
		})
	fs.Func("namespaced-issuer-token-services",
		"Comma-separated token Services (namespace/name:port) a namespaced ACMEIssuer's spec.solver.istio.tokenService may name (default: --token-service's).",
		func(v string) error {
			for _, ref := range splitList(v, ",") {
				svc, err := parseServiceRef(ref)
				if err != nil {
					return err
				}
				o.namespacedIssuers.TokenServices = append(o.namespacedIssuers.TokenServices, svc)
			}
			return nil
		})
	fs.BoolVar(&o.renewalInfo, "renewal-info", true,
		"Follow the CA's renewal information (ARI, RFC 9773) for the certificates our issuers sign: ask cert-manager to renew a Certificate when the CA's window says, which may be before its renewBefore (a CA about to revoke moves the window). Needs get on certificates and patch on certificates/status.")
	fs.DurationVar(&o.renewalInfoMinInterval, "renewal-info-min-interval", time.Hour,
		"Shortest wait between two readings of a certificate's renewal information, whatever the CA's Retry-After; also the wait after a reading failed.")
	fs.DurationVar(&o.renewalInfoMaxInterval, "renewal-info-max-interval", 24*time.Hour,
		"Longest wait between two readings of a certificate's renewal information.")
	o.istioMeshConfig = client.ObjectKey{Namespace: "istio-system", Name: "istio"}
	fs.Func("istio-mesh-config",
		"istiod's mesh configuration ConfigMap as namespace/name (default istio-system/istio; istio-REVISION for a revisioned istiod), whose key mesh sets defaultVirtualServiceExportTo, the exportTo of VirtualServices that set none; an empty value assumes istiod's default, every namespace. Needs get on ConfigMaps in that namespace.",
		func(v string) error {
			if v == "" {
				o.istioMeshConfig = client.ObjectKey{}
				return nil
			}
			ns, name, ok := strings.Cut(v, "/")
			if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
				return fmt.Errorf("%q is not namespace/name (for example istio-system/istio), or \"\" for istiod's defaults", v)
			}
			o.istioMeshConfig = client.ObjectKey{Namespace: ns, Name: name}
			return nil
		})
	fs.BoolVar(&o.scopeGatewayToNamespace, "scope-gateway-to-namespace", false,
		"Set as istiod's PILOT_SCOPE_GATEWAY_TO_NAMESPACE: gateway pods get only the Gateways of their own namespace, so challenges that need a Gateway of their own are refused unless the solver's gatewayNamespace is the gateway pods' namespace.")
	o.zap.BindFlags(fs)
	fs.BoolVar(&o.showVersion, "version", false, "Print the version and exit.")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "",
		"Path to a kubeconfig. Defaults to $KUBECONFIG, else the in-cluster configuration.")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.renewalInfoMinInterval <= 0 || o.renewalInfoMaxInterval < o.renewalInfoMinInterval {
		return o, fmt.Errorf("--renewal-info-min-interval (%s) must be above zero and at most --renewal-info-max-interval (%s)", o.renewalInfoMinInterval, o.renewalInfoMaxInterval)
	}
	if o.leaderElectionNamespace == "" {
		o.leaderElectionNamespace = o.clusterResourceNamespace
	}
	if len(o.namespacedIssuers.TokenServices) == 0 {
		o.namespacedIssuers.TokenServices = []v1alpha1.TokenServiceReference{o.tokenService}
	}
	if o.orphanSweepInterval <= 0 {
		return o, errors.New("--orphan-sweep-interval must be positive")
	}
	if o.workers < 1 {
		return o, errors.New("--workers must be at least 1")
	}
	return o, nil
}

// parseServiceRef parses namespace/name:port.
// splitList splits a flag's list and drops empty entries.
func splitList(v, sep string) []string {
	var out []string
	for _, x := range strings.Split(v, sep) {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func parseServiceRef(v string) (v1alpha1.TokenServiceReference, error) {
	nsName, port, ok := strings.Cut(v, ":")
	ns, name, ok2 := strings.Cut(nsName, "/")
	p, err := strconv.ParseInt(port, 10, 32)
	if !ok || !ok2 || ns == "" || name == "" || err != nil || p < 1 || p > 65535 {
		return v1alpha1.TokenServiceReference{}, fmt.Errorf("%q is not namespace/name:port (for example istio-acme-issuer/istio-acme-issuer:8089)", v)
	}
	return v1alpha1.TokenServiceReference{Namespace: ns, Name: name, Port: int32(p)}, nil
}

// resolver asks the given DNS servers in turn, or is nil (the system's
// resolver) without any.
func resolver(nameservers []string) *net.Resolver {
	if len(nameservers) == 0 {
		return nil
	}
	var next atomic.Uint32
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			ns := nameservers[int(next.Add(1)-1)%len(nameservers)]
			var d net.Dialer
			return d.DialContext(ctx, network, ns)
		},
	}
}

func newScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme,
		cmapi.AddToScheme,
		cmacme.AddToScheme,
		istionet.AddToScheme,
		v1alpha1.AddToScheme,
	} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func run(ctx context.Context, o options) error {
	logger := zap.New(zap.UseFlagOptions(&o.zap))
	ctrl.SetLogger(logger)
	klog.SetLogger(logger)
	logger.Info("starting istio-acme-issuer", "version", version, "go", goruntime.Version())
	metrics.SetBuildInfo(version, goruntime.Version())
	if pct := setGCPercent(); pct > 0 {
		logger.V(1).Info("garbage collector target set", "percent", pct)
	}
	if limit := setMemoryLimit("/sys/fs/cgroup"); limit > 0 {
		logger.Info("Go heap limit set below the container's memory limit", "bytes", limit)
	}

	scheme, err := newScheme()
	if err != nil {
		return err
	}
	cfg, err := loadConfig(o.kubeconfig)
	if err != nil {
		return fmt.Errorf("loading the Kubernetes client configuration: %w", err)
	}
	// client-go's default of 5 requests per second would queue status
	// updates and Events behind each other while orders are in flight; a
	// renewal wave of hundreds of Certificates costs about 26 requests
	// each. The API server's own priority and fairness protects it.
	cfg.QPS, cfg.Burst = float32(o.kubeAPIQPS), o.kubeAPIBurst
	byObject := solver.IstioCacheOptions()
	certificates, err := shim.CertificateCacheOptions()
	if err != nil {
		return err
	}
	maps.Copy(byObject, certificates)
	maps.Copy(byObject, issuer.CertificateRequestCacheOptions())
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: o.metricsAddress},
		HealthProbeBindAddress:        o.probeAddress,
		PprofBindAddress:              o.pprofAddress,
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              o.leaderElectionID,
		LeaderElectionNamespace:       o.leaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		Cache: cache.Options{
			// Gateways and VirtualServices are cached trimmed: the route
			// planner reads users' ones for every challenge. Certificates
			// only the Gateway shim's; finished CertificateRequests
			// without their PEMs.
			ByObject: byObject,
			// Nothing reads managedFields, and server-side apply leaves
			// several entries on every CertificateRequest; an update sent
			// without them keeps the server's.
			DefaultTransform: kubeutil.CacheTransform(nil),
		},
		Client: client.Options{
			// Account keys are read rarely and directly: no informer on
			// every Secret in the cluster.
			Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}},
		},
	})
	if err != nil {
		return fmt.Errorf("creating the controller manager: %w", err)
	}

	// Only challenges of our orders or of cert-manager Challenges of our
	// classes are routed and answered. What proves a challenge ours is
	// read through the token path's reader: every replica answers tokens,
	// and only from informers synced before it is ready.
	var requesterReads []client.Object
	if o.gatewayShim {
		requesterReads = shim.RequesterReads()
	}
	tokenPath, err := solver.NewTokenPathReader(ctx, mgr.GetCache(), mgr.GetScheme(), requesterReads...)
	if err != nil {
		return err
	}
	provenance := &solver.Provenance{Client: tokenPath}
	// A Certificate the Gateway shim keeps in the gateway pods' namespace
	// asks for the Gateway's namespace; only the shim's Certificates are
	// readable (and cached), so only with the shim.
	var requester solver.RequesterFunc
	if o.gatewayShim {
		requester = (&shim.Requester{Client: tokenPath, Pods: mgr.GetAPIReader()}).Of
		provenance.Requester = requester
	}
	// Presented challenges of our orders go to the signer in memory, and
	// the token server's answer to the CA wakes it.
	presentations := solver.NewPresentations()
	tokens := &solver.TokenServer{
		Addr:     o.tokenServerAddress,
		Lookup:   solver.CacheLookup(tokenPath),
		Proven:   provenance.Proven,
		Answered: presentations.Answered,
		Log:      logger.WithName("token-server"),
	}
	if err := mgr.Add(tokens); err != nil {
		return err
	}

	recorder := mgr.GetEventRecorder("istio-acme-issuer")
	discovery := &solver.GatewayDiscovery{Reader: mgr.GetAPIReader(), Mesh: &solver.MeshSettings{
		Reader: mgr.GetAPIReader(), ConfigMap: o.istioMeshConfig, ScopeGatewayToNamespace: o.scopeGatewayToNamespace,
	}}
	// One tenancy rule for every front door: our issuers' requests before
	// any order, and every challenge before its routes are planned.
	authorizer := &solver.HostAuthorizer{Client: mgr.GetClient(), Discovery: discovery}
	if err := (&solver.ChallengeReconciler{
		Client:           mgr.GetClient(),
		Presentations:    presentations,
		APIReader:        mgr.GetAPIReader(),
		Events:           recorder,
		Workers:          o.workers,
		Discovery:        discovery,
		SelfCheck:        &solver.SelfCheck{Resolver: resolver(o.selfCheckNameservers)},
		Authorizer:       authorizer,
		Provenance:       provenance,
		NamespacedPolicy: &o.namespacedIssuers,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the challenge controller: %w", err)
	}
	if o.certManagerChallenges {
		if err := (&solver.CertManagerChallengeReconciler{
			Client:       mgr.GetClient(),
			Events:       recorder,
			Workers:      o.workers,
			TokenService: o.tokenService,
		}).SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the cert-manager Challenge controller: %w", err)
		}
	}
	if o.gatewayShim {
		if err := (&shim.GatewayReconciler{
			Client:     mgr.GetClient(),
			APIReader:  mgr.GetAPIReader(),
			Events:     recorder,
			Namespaces: o.gatewayShimNamespaces,
		}).SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the Gateway shim: %w", err)
		}
	}
	if err := mgr.Add(&solver.OrphanSweeper{
		Client:   mgr.GetClient(),
		Interval: o.orphanSweepInterval,
		MinAge:   time.Minute,
		Log:      logger.WithName("orphan-sweep"),
	}); err != nil {
		return err
	}
	signer := issuer.NewSigner(issuer.Options{
		Client:                   mgr.GetClient(),
		Secrets:                  mgr.GetClient(),
		Events:                   recorder,
		ClusterResourceNamespace: o.clusterResourceNamespace,
		UserAgent:                "istio-acme-issuer/" + version,
		Authorize:                authorizer.Authorize,
		RefusalGrace:             o.maxRetryDuration,
		NamespacedPolicy:         o.namespacedIssuers.Check,
		Requester:                requester,
		Presentations:            presentations,
	})
	if err := issuer.SetupWithManager(ctx, mgr, issuer.SetupOptions{
		Signer:           signer,
		MaxRetryDuration: o.maxRetryDuration,
		Workers:          o.workers,
	}); err != nil {
		return fmt.Errorf("setting up the issuer controllers: %w", err)
	}

	if o.renewalInfo {
		if err := (&issuer.Renewals{
			Signer:       signer,
			Certificates: mgr.GetAPIReader(),
			MinInterval:  o.renewalInfoMinInterval,
			MaxInterval:  o.renewalInfoMaxInterval,
		}).SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the renewal controller: %w", err)
		}
	}

	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("token-server", tokens.ReadyCheck); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

func loadConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return ctrl.GetConfig()
}

// versionLine is what --version prints.
func versionLine() string {
	return fmt.Sprintf("istio-acme-issuer %s (%s, %s/%s)", version, goruntime.Version(), goruntime.GOOS, goruntime.GOARCH)
}

func main() {
	err := func() error {
		o, err := parseFlags(os.Args[1:])
		if err != nil {
			return err
		}
		if o.showVersion {
			fmt.Println(versionLine())
			return nil
		}
		return run(ctrl.SetupSignalHandler(), o)
	}()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "istio-acme-issuer:", err)
		os.Exit(1)
	}
}
