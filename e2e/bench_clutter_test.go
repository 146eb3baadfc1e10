//go:build bench

package e2e

import (
	"context"
	"fmt"
	"sync"
	"time"

	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// clutterGateway is the i-th unrelated Gateway: an HTTPS server for its own
// wildcard and a port 80 server redirecting it. Every fourth one is on the
// shared ingress gateway, as per-team Gateways are; the others select
// other gateway workloads.
func clutterGateway(i, namespaces int) *istionet.Gateway {
	gw := &istionet.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("clutter%d", i%namespaces), Name: fmt.Sprintf("g%d", i)}}
	gw.Spec.Selector = map[string]string{"istio": fmt.Sprintf("other-gateway-%d", i%20)}
	if i%4 == 0 {
		gw.Spec.Selector = map[string]string{"istio": "ingressgateway"}
	}
	hosts := []string{fmt.Sprintf("*.g%d.example.net", i)}
	gw.Spec.Servers = []*istioapi.Server{
		{Port: &istioapi.Port{Number: 443, Name: "https", Protocol: "HTTPS"}, Hosts: hosts,
			Tls: &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_SIMPLE, CredentialName: fmt.Sprintf("secret%d", i)}},
		{Port: &istioapi.Port{Number: 80, Name: "http", Protocol: "HTTP"}, Hosts: hosts,
			Tls: &istioapi.ServerTLSSettings{HttpsRedirect: true}},
	}
	return gw
}

// clutterVirtualService is the i-th unrelated VirtualService, bound to one
// of the unrelated Gateways under a name of its wildcard.
func clutterVirtualService(i, gateways, namespaces int) *istionet.VirtualService {
	g := i % max(gateways, 1)
	vs := &istionet.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("clutter%d", i%namespaces), Name: fmt.Sprintf("v%d", i)}}
	vs.Spec.Hosts = []string{fmt.Sprintf("v%d.g%d.example.net", i, g)}
	vs.Spec.Gateways = []string{fmt.Sprintf("clutter%d/g%d", g%namespaces, g)}
	vs.Spec.Http = []*istioapi.HTTPRoute{{
		Match: []*istioapi.HTTPMatchRequest{{Uri: &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Prefix{Prefix: "/"}}}},
		Route: []*istioapi.HTTPRouteDestination{{Destination: &istioapi.Destination{Host: fmt.Sprintf("app%d.clutter%d.svc.cluster.local", i, i%namespaces), Port: &istioapi.PortSelector{Number: 8080}}}},
	}}
	return vs
}

// clutterFigures say what the memory case put in the cluster.
type clutterFigures struct {
	secrets, gateways, virtualServices int
	took                               time.Duration
}

// createClutter fills the cluster with objects unrelated to any
// Certificate: TLS Secrets, Gateways for other gateway workloads and
// VirtualServices bound to them, in ten namespaces.
func (c *cluster) createClutter(size clutterSize) clutterFigures {
	c.t.Helper()
	start := time.Now()
	const namespaces = 10
	for i := range namespaces {
		c.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("clutter%d", i)}})
	}
	key := make([]byte, 1700) // about the size of a TLS Secret's data
	// The tests' client is limited to 200 requests per second, which
	// would make this take as many seconds as objects / 200; the API
	// server and etcd are the limit here.
	cfg := rest.CopyConfig(c.api.Config)
	cfg.QPS, cfg.Burst = 2000, 2000
	cl, err := client.New(cfg, client.Options{Scheme: c.cl.Scheme()})
	if err != nil {
		c.t.Fatal(err)
	}
	work := make(chan func() error)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for f := range work {
				if err := f(); err != nil {
					c.t.Errorf("creating clutter: %v", err)
				}
			}
		})
	}
	ctx := context.Background()
	for i := range size.secrets {
		work <- func() error {
			return cl.Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("clutter%d", i%namespaces), Name: fmt.Sprintf("secret%d", i)},
				Type:       corev1.SecretTypeTLS,
				Data:       map[string][]byte{"tls.crt": key, "tls.key": key[:240]},
			})
		}
	}
	for i := range size.gateways {
		work <- func() error { return cl.Create(ctx, clutterGateway(i, namespaces)) }
	}
	for i := range size.virtualServices {
		work <- func() error { return cl.Create(ctx, clutterVirtualService(i, size.gateways, namespaces)) }
	}
	close(work)
	wg.Wait()
	return clutterFigures{size.secrets, size.gateways, size.virtualServices, time.Since(start)}
}
