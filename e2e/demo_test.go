//go:build demo

package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

// TestDemo is what 'make demo' runs: the whole product on an embedded
// default. It starts a local API server, Pebble, cert-manager's controllers,
// our controller and an ingress gateway routed by Istio's own simulation,
// issues one certificate through Istio routes and prints what a user sees.
func TestDemo(t *testing.T) {
	c := startCluster(t)
	fmt.Println("==> ACMEClusterIssuer pebble (ACME directory", c.pebble.DirectoryURL+")")
	c.clusterIssuer("pebble", v1alpha1.ACMESolver{})
	fmt.Println("==> ACMEClusterIssuer pebble is Ready")

	names := []string{"demo.example.com", "www.demo.example.com"}
	fmt.Printf("==> Certificate apps/demo for %v\n", names)
	crt := c.certificate("demo", "pebble", names...)
	elapsed := c.waitReady(crt, 60*time.Second)
	leaf := c.verifySecret(crt, names...)
	fmt.Printf("==> Certificate apps/demo: Ready True after %s; Secret demo-tls holds a chain to Pebble's root for %v\n", elapsed.Round(time.Millisecond), leaf.DNSNames)
	fmt.Println("==> cmctl status certificate demo -n apps")
	fmt.Print(c.cmctl("status", "certificate", crt.Name, "-n", crt.Namespace))
	c.waitNothingLeft()
	fmt.Println("==> no challenge Gateway, VirtualService or ACMEChallenge is left; stopping everything")
}
