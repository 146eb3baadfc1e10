// Command cert-manager-controller runs cert-manager's own controllers, from
// cert-manager's Go module, against a kubeconfig. cert-manager publishes no
// Go module for its controller binary; this is the part of it the
// end-to-end tests need: Certificates become CertificateRequests, requests
// are approved, and issued requests become Secrets and Ready Certificates;
// and cert-manager's own ACME issuer (Issuers, ClusterIssuers, Orders,
// Challenges) with cert-manager's defaults, its HTTP-01 self-check resolving
// names with --acme-http01-solver-nameservers; and its CA issuer, the
// floor of the bench.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	controllerpkg "github.com/cert-manager/cert-manager/pkg/controller"
	_ "github.com/cert-manager/cert-manager/pkg/controller/acmechallenges"
	_ "github.com/cert-manager/cert-manager/pkg/controller/acmeorders"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/acme"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	// The ACME and CA issuers' implementations register themselves
	// (cert-manager's controller binary imports every issuer this way); the
	// CA issuer is the bench's floor.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/acme"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/klog/v2"
)

var controllers = []string{
	"certificates-trigger",
	"certificates-key-manager",
	"certificates-request-manager",
	"certificates-readiness",
	"certificates-issuing",
	"certificates-revision-manager",
	"certificaterequests-approver",
	"issuers",
	"clusterissuers",
	"certificaterequests-issuer-acme",
	"certificaterequests-issuer-ca",
	"orders",
	"challenges",
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cert-manager-controller:", err)
		os.Exit(1)
	}
}

func run() error {
	kubeconfig := flag.String("kubeconfig", "", "Path to the kubeconfig.")
	namespace := flag.String("cluster-resource-namespace", "cert-manager", "cert-manager's cluster resource namespace.")
	workers := flag.Int("workers", 5, "Workers per controller.")
	qps := flag.Float64("kube-api-qps", 100, "Requests per second to the API server (client-side limit).")
	burst := flag.Int("kube-api-burst", 200, "Burst of requests to the API server (client-side limit).")
	nameservers := flag.String("acme-http01-solver-nameservers", "", "Comma-separated DNS servers (host:port) of the HTTP-01 self-check.")
	metricsAddr := flag.String("metrics-listen-address", "", "Address of cert-manager's Prometheus metrics endpoint; empty: none.")
	noApprover := flag.Bool("disable-approver", false, "Leave out cert-manager's own approver (certificaterequests-approver), as a cluster that runs approver-policy does.")
	klog.InitFlags(nil)
	flag.Parse()
	if *kubeconfig == "" {
		return errors.New("--kubeconfig is required")
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx = logf.NewContext(ctx, klog.Background(), "cert-manager")

	factory, err := controllerpkg.NewContextFactory(ctx, controllerpkg.ContextOptions{
		Kubeconfig:         *kubeconfig,
		KubernetesAPIQPS:   float32(*qps),
		KubernetesAPIBurst: *burst,
		IssuerOptions:      controllerpkg.IssuerOptions{ClusterResourceNamespace: *namespace},
		// cert-manager's defaults (its controller's flags).
		ACMEOptions: controllerpkg.ACMEOptions{
			HTTP01SolverImage:                 "quay.io/jetstack/cert-manager-acmesolver:v1.21.2",
			HTTP01SolverResourceRequestCPU:    resource.MustParse("10m"),
			HTTP01SolverResourceRequestMemory: resource.MustParse("64Mi"),
			HTTP01SolverResourceLimitsCPU:     resource.MustParse("100m"),
			HTTP01SolverResourceLimitsMemory:  resource.MustParse("64Mi"),
			ACMEHTTP01SolverRunAsNonRoot:      true,
			HTTP01SolverNameservers:           splitNonEmpty(*nameservers),
			DNS01CheckRetryPeriod:             10 * time.Second,
		},
		SchedulerOptions: controllerpkg.SchedulerOptions{MaxConcurrentChallenges: 60},
		CertificateOptions: controllerpkg.CertificateOptions{
			CertificateRequestMinimumBackoffDuration: time.Minute,
			CertificateRequestMaximumBackoffDuration: 32 * time.Hour,
		},
	})
	if err != nil {
		return err
	}

	var wg sync.WaitGroup
	errs := make(chan error, len(controllers))
	for _, name := range controllers {
		if *noApprover && name == "certificaterequests-approver" {
			continue
		}
		construct, ok := controllerpkg.Known()[name]
		if !ok {
			return fmt.Errorf("cert-manager has no controller %q", name)
		}
		c, err := construct(factory)
		if err != nil {
			return fmt.Errorf("constructing %s: %w", name, err)
		}
		wg.Go(func() {
			if err := c.Run(*workers, ctx); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		})
	}

	// The controllers registered their informers while being constructed;
	// the factories they share start them.
	shared, err := factory.Build("informers")
	if err != nil {
		return err
	}
	if *metricsAddr != "" {
		// cert-manager's metrics endpoint, with its Certificate collector,
		// as its controller serves them.
		shared.Metrics.SetupCertificateCollector(shared.SharedInformerFactory.Certmanager().V1().Certificates().Lister())
		ln, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			return fmt.Errorf("serving metrics: %w", err)
		}
		srv := shared.Metrics.NewServer(ln)
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
	}
	shared.SharedInformerFactory.Start(ctx.Done())
	shared.KubeSharedInformerFactory.Start(ctx.Done())
	shared.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())
	klog.Info("cert-manager controllers started", "controllers", controllers)

	wg.Wait()
	close(errs)
	return errors.Join(func() []error {
		var all []error
		for err := range errs {
			all = append(all, err)
		}
		return all
	}()...)
}

func splitNonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
