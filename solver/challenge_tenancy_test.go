package solver

import (
	"context"
	"strings"
	"testing"

	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

// The tenancy rule in the challenge controller, against a real API server:
// team-b serves secure.b.example.org on 443 only, from its own Gateway with
// ./host. team-a's challenge for it gets no route and a HostNotAllowed
// reason; team-b's own challenge is routed through a port-80 server that
// admits team-b's routes only, and its VirtualService lives in team-b; a
// grant admits team-a at once.
func TestChallengeTenancy(t *testing.T) {
	ctx := context.Background()
	api, gatewayAddr := startIngress(ctx, t, "team-a", "team-b")
	cl := api.Client
	gwLabels := map[string]string{"istio": "ingressgateway"}
	teamB := &istionet.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "team-b", Name: "secure"}}
	teamB.Spec.Selector = gwLabels
	teamB.Spec.Servers = []*istioapi.Server{{
		Port:  &istioapi.Port{Number: 443, Name: "https", Protocol: "HTTPS"},
		Hosts: []string{"./secure.b.example.org"},
		Tls:   &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_SIMPLE, CredentialName: "secure-b-tls"},
	}}
	if err := cl.Create(ctx, teamB); err != nil {
		t.Fatal(err)
	}
	// The token server answers on the gateway's address, as if the gateway
	// routed every request to it.
	startChallengeController(ctx, t, api, gatewayAddr, true)

	challenge := func(namespace string) *v1alpha1.ACMEChallenge {
		ch := testChallenge()
		ch.Namespace, ch.Spec.DNSName, ch.Spec.Token, ch.Spec.Key = namespace, "secure.b.example.org", "tok-"+namespace, "tok-"+namespace+".thumb"
		return ch
	}
	intruder, owner := challenge("team-a"), challenge("team-b")
	for _, ch := range []*v1alpha1.ACMEChallenge{intruder, owner} {
		if err := cl.Create(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	waitChallenge(t, cl, intruder, "team-a's challenge to be refused", func(got *v1alpha1.ACMEChallenge) bool {
		return strings.Contains(got.Status.Message, "namespace team-a may not get secure.b.example.org") &&
			strings.Contains(got.Status.Message, "Gateway team-b/secure")
	})
	waitChallenge(t, cl, owner, "team-b's challenge to be presented", func(got *v1alpha1.ACMEChallenge) bool { return got.Status.Presented })

	ours := func(namespace string) (gws []*istionet.Gateway, vss []*istionet.VirtualService) {
		var gl istionet.GatewayList
		var vl istionet.VirtualServiceList
		sel := client.MatchingLabels{LabelManagedBy: ManagedByValue, LabelChallenge: ChallengeKey(namespace, intruder.Name)}
		if err := cl.List(ctx, &gl, sel); err != nil {
			t.Fatal(err)
		}
		if err := cl.List(ctx, &vl, sel); err != nil {
			t.Fatal(err)
		}
		return gl.Items, vl.Items
	}
	if gws, vss := ours("team-a"); len(gws)+len(vss) != 0 {
		t.Errorf("team-a's refused challenge has %d Gateways and %d VirtualServices", len(gws), len(vss))
	}
	gws, vss := ours("team-b")
	if len(gws) != 1 || len(vss) != 1 {
		t.Fatalf("team-b's challenge has %d Gateways and %d VirtualServices, want one of each", len(gws), len(vss))
	}
	if hosts := gws[0].Spec.Servers[0].Hosts; len(hosts) != 1 || hosts[0] != "team-b/secure.b.example.org" {
		t.Errorf("our server's hosts %v, want only team-b's routes admitted", hosts)
	}
	if vss[0].Namespace != "team-b" {
		t.Errorf("the challenge's VirtualService is in %s, want team-b, the requester's namespace", vss[0].Namespace)
	}

	// The platform grants team-a the name: routed without waiting out a
	// backoff, through our own server for team-a.
	if err := cl.Create(ctx, &v1alpha1.HostnameGrant{
		ObjectMeta: metav1.ObjectMeta{Name: "team-a"},
		Spec:       v1alpha1.HostnameGrantSpec{Namespaces: []string{"team-a"}, DNSNames: []string{"secure.b.example.org"}},
	}); err != nil {
		t.Fatal(err)
	}
	waitChallenge(t, cl, intruder, "team-a's granted challenge to be presented", func(got *v1alpha1.ACMEChallenge) bool { return got.Status.Presented })
}
