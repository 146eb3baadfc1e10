//go:build demo

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

// TestDemo is what 'make demo' runs: the whole product on an embedded
// default. It starts a local API server, Pebble, cert-manager's controllers,
// our controller and an ingress gateway routed by Istio's own simulation,
// issues one certificate through Istio routes and prints what a user sees.
func TestDemo(t *testing.T) {
	c := startClusterWith(t, clusterOptions{controller: true, noZoneGrant: true})
	fmt.Println("==> ACMEClusterIssuer pebble (ACME directory", c.pebble.DirectoryURL+")")
	c.clusterIssuer("pebble", v1alpha1.ACMESolver{})
	fmt.Println("==> ACMEClusterIssuer pebble is Ready")

	// No Gateway lists the names yet, so Istio lets no namespace serve
	// them: the request waits, with no order placed, until the platform
	// grants them.
	names := []string{"demo.example.com", "www.demo.example.com"}
	fmt.Printf("==> Certificate apps/demo for %v\n", names)
	crt := c.certificate("demo", "pebble", names...)
	var state string
	c.eventually("the request to be refused until the names are granted", 30*time.Second, func() (bool, string) {
		state = c.requestState(crt)
		return strings.Contains(state, "namespace apps may not get demo.example.com"), state
	})
	fmt.Println("==> its request waits, no order placed: namespace apps may not get demo.example.com: no Gateway server ... lists it")
	grant := &v1alpha1.HostnameGrant{
		ObjectMeta: metav1.ObjectMeta{Name: "apps-demo"},
		Spec:       v1alpha1.HostnameGrantSpec{Namespaces: []string{"apps"}, Zones: []string{"demo.example.com"}},
	}
	c.create(grant)
	fmt.Println("==> HostnameGrant apps-demo: namespace apps may get demo.example.com and the names below it")
	elapsed := c.waitReady(crt, 60*time.Second)
	leaf := c.verifySecret(crt, names...)
	fmt.Printf("==> Certificate apps/demo: Ready True after %s; Secret demo-tls holds a chain to Pebble's root for %v\n", elapsed.Round(time.Millisecond), leaf.DNSNames)
	fmt.Println("==> cmctl status certificate demo -n apps")
	fmt.Print(c.cmctl("status", "certificate", crt.Name, "-n", crt.Namespace))
	c.waitNothingLeft()
	fmt.Println("==> no challenge Gateway, VirtualService or ACMEChallenge is left; stopping everything")
}
