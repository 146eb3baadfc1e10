// Package solver answers ACME HTTP-01 challenges through Istio: it builds the
// Gateway and VirtualService that route a challenge's token to the token
// server, keeps them in place while the challenge lives, and serves the
// tokens from every replica.
package solver

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"

	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

const (
	// LabelManagedBy marks every Istio object this controller creates.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy on our objects.
	ManagedByValue = "istio-acme-issuer"
	// LabelChallenge carries ChallengeKey of the challenge an object serves;
	// the orphan sweep compares it with the challenges that still exist.
	LabelChallenge = "istio-acme.io/challenge"
	// AnnotationChallenge names the challenge (namespace/name) for humans.
	AnnotationChallenge = "istio-acme.io/challenge"

	// ChallengePathPrefix is the path under which HTTP-01 tokens are fetched.
	ChallengePathPrefix = "/.well-known/acme-challenge/"

	httpPort = 80
)

// Routes are the Istio objects that route one challenge.
type Routes struct {
	Gateway        *istionet.Gateway
	VirtualService *istionet.VirtualService
}

// ChallengeKey identifies a challenge in label values and object names: a
// short hash of its namespace and name, which may be too long for either.
func ChallengeKey(namespace, name string) string {
	sum := sha256.Sum256([]byte(namespace + "/" + name))
	return hex.EncodeToString(sum[:8])
}

// TokenServiceHost is the cluster-local host name of the token Service.
func TokenServiceHost(ref v1alpha1.TokenServiceReference) string {
	return fmt.Sprintf("%s.%s.svc.cluster.local", ref.Name, ref.Namespace)
}

// BuildRoutes returns the Gateway and VirtualService that route
// GET http://<host>/.well-known/acme-challenge/<token> on port 80 of the
// solver's gateway workload to the token Service. The Gateway's server covers
// only the challenged host; the VirtualService matches only the exact token
// path, so nothing else of the host's traffic is touched.
func BuildRoutes(ch *v1alpha1.ACMEChallenge) Routes {
	sol := ch.Spec.Solver
	key := ChallengeKey(ch.Namespace, ch.Name)
	meta := metav1.ObjectMeta{
		Name:      "acme-" + key,
		Namespace: sol.GatewayNamespace,
		Labels: map[string]string{
			LabelManagedBy: ManagedByValue,
			LabelChallenge: key,
		},
		Annotations: map[string]string{
			AnnotationChallenge: ch.Namespace + "/" + ch.Name,
		},
	}

	gw := &istionet.Gateway{ObjectMeta: *meta.DeepCopy()}
	gw.Spec.Selector = maps.Clone(sol.GatewaySelector)
	gw.Spec.Servers = []*istioapi.Server{{
		Port:  &istioapi.Port{Number: httpPort, Name: "http-acme", Protocol: "HTTP"},
		Hosts: []string{ch.Spec.DNSName},
	}}

	vs := &istionet.VirtualService{ObjectMeta: *meta.DeepCopy()}
	vs.Spec.Hosts = []string{ch.Spec.DNSName}
	vs.Spec.Gateways = []string{gw.Namespace + "/" + gw.Name}
	vs.Spec.Http = []*istioapi.HTTPRoute{{
		Name: "acme-http01",
		Match: []*istioapi.HTTPMatchRequest{{
			Uri: &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Exact{Exact: ChallengePathPrefix + ch.Spec.Token}},
		}},
		Route: []*istioapi.HTTPRouteDestination{{
			Destination: &istioapi.Destination{
				Host: TokenServiceHost(sol.TokenService),
				Port: &istioapi.PortSelector{Number: uint32(sol.TokenService.Port)},
			},
		}},
	}}

	return Routes{Gateway: gw, VirtualService: vs}
}
