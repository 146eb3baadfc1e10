package e2e

import (
	"context"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/e2e/istiogw"
	"github.com/istio-acme/istio-acme-issuer/solver"
)

// TestSeveralGatewayWorkloads issues through an issuer that targets two
// ingress gateway workloads with different selectors, each serving its own
// hosts, with public DNS sending each host to its gateway.
func TestSeveralGatewayWorkloads(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()
	c.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "edge"}})
	edgeLabels := map[string]string{"istio": "edge-gateway", "app": "edge-gateway"}
	edge, edgeIP := c.startGateway("edge", "edge-gateway", edgeLabels)
	app := c.userApp("shop-app", appNamespace)

	// shop.two.test is served by the default gateway (where DNS sends every
	// name), partner.two.test by the edge gateway.
	c.userGateway("shop", "shop.two.test", app)
	c.userGateway("partner", "partner.two.test", app, withSelector(map[string]string{"istio": "edge-gateway"}))
	c.pebble.AddA(t, "partner.two.test", edgeIP)

	c.clusterIssuer("two", v1alpha1.ACMESolver{Istio: v1alpha1.IstioHTTP01Solver{
		Gateways: []v1alpha1.GatewayWorkloadSelector{
			{Selector: map[string]string{"istio": "ingressgateway"}},
			{Selector: map[string]string{"istio": "edge-gateway"}, Namespace: "edge"},
		},
		GatewayNamespace:    gatewayNamespace,
		TokenService:        v1alpha1.TokenServiceReference{Name: "istio-acme-issuer", Namespace: controllerNamespace, Port: tokenServicePort},
		SelfCheckThroughDNS: true,
	}})
	const va = "LetsEncrypt-Pebble-VA"

	t.Run("each host is routed on the gateway that serves it", func(t *testing.T) {
		crt := c.certificate("two", "two", "shop.two.test", "partner.two.test")
		elapsed := c.waitReady(crt, 60*time.Second)
		c.verifySecret(crt, "shop.two.test", "partner.two.test")
		for _, tt := range []struct {
			host       string
			via, other string
		}{{"shop.two.test", "default", "edge"}, {"partner.two.test", "edge", "default"}} {
			gws := map[string]*istiogw.Gateway{"default": c.gateway, "edge": edge}
			if n := gws[tt.via].Served(va, tt.host, solver.ChallengePathPrefix); n == 0 {
				t.Errorf("the CA never fetched the token for %s through the %s gateway", tt.host, tt.via)
			}
			if n := gws[tt.other].Served(va, tt.host, solver.ChallengePathPrefix); n != 0 {
				t.Errorf("the CA fetched the token for %s through the %s gateway, which does not serve it", tt.host, tt.other)
			}
			// Three answers through the gateway Service, three more
			// through DNS, which sends the host to the same gateway.
			if n := gws[tt.via].Served(solver.SelfCheckUserAgent, tt.host, solver.ChallengePathPrefix); n < 6 {
				t.Errorf("the self-check fetched the token for %s %d times through the %s gateway, want 3 through its Service and 3 through DNS", tt.host, n, tt.via)
			}
			if c.createdGatewayFor(tt.host) {
				t.Errorf("the controller created a Gateway of its own for %s, which a user's Gateway serves", tt.host)
			}
		}
		t.Logf("Ready after %s, each name through its own gateway", elapsed.Round(time.Millisecond))
		c.waitNothingLeft()
	})

	t.Run("a host no Gateway serves gets a Gateway of its own on each workload", func(t *testing.T) {
		c.pebble.AddA(t, "new.two.test", edgeIP)
		elapsed := c.issueVia(edge, "new", "two", "new.two.test")
		got := c.ourGatewaySelectorsFor("new.two.test")
		if want := []string{"istio=edge-gateway", "istio=ingressgateway"}; !slices.Equal(got, want) {
			t.Errorf("own Gateways for the host select %v, want one per workload %v", got, want)
		}
		t.Logf("Ready after %s through the edge gateway, where DNS sends the host", elapsed.Round(time.Millisecond))
		c.waitNothingLeft()
	})

	t.Run("DNS that does not send the host to a gateway fails the self-check through DNS, before the CA is asked", func(t *testing.T) {
		// Nothing listens there (127.95/16 is outside the test's Service range).
		c.pebble.AddA(t, "lost.two.test", "127.95.0.1")
		crt := c.certificate("lost", "two", "lost.two.test")
		c.waitRequestMessage(crt, "self-check through DNS failed", "lost.two.test resolves to 127.95.0.1",
			"self-check passed through the ingress gateway at")
		if n := c.metricSum("istio_acme_challenge_not_presented_total", `reason="self_check_dns"`); n < 1 {
			t.Errorf("istio_acme_challenge_not_presented_total{reason=\"self_check_dns\"} = %v, want at least 1", n)
		}
		var chs v1alpha1.ACMEChallengeList
		if err := c.cl.List(ctx, &chs, client.InNamespace(appNamespace)); err != nil {
			t.Fatal(err)
		}
		for _, ch := range chs.Items {
			if ch.Spec.DNSName == "lost.two.test" && ch.Status.State != "" {
				t.Errorf("the challenge was accepted at the CA (state %s)", ch.Status.State)
			}
		}
		c.abandon(crt)
	})

	t.Run("a gateway selector that matches no pod is reported with its index", func(t *testing.T) {
		c.clusterIssuer("gone", v1alpha1.ACMESolver{Istio: v1alpha1.IstioHTTP01Solver{
			Gateways: []v1alpha1.GatewayWorkloadSelector{
				{Selector: map[string]string{"istio": "ingressgateway"}},
				{Selector: map[string]string{"istio": "gone-gateway"}},
			},
			GatewayNamespace: gatewayNamespace,
			TokenService:     v1alpha1.TokenServiceReference{Name: "istio-acme-issuer", Namespace: controllerNamespace, Port: tokenServicePort},
		}})
		crt := c.certificate("gone", "gone", "shop.two.test")
		c.waitRequestMessage(crt, "spec.solver.istio.gateways[1]: no pod has the labels istio=gone-gateway", "kubectl get pods -A --show-labels")
		c.abandon(crt)
	})
}
