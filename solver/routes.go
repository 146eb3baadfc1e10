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
	"slices"
	"strings"

	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
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

	httpPort  = 80
	httpsPort = 443
)

// Routes are the objects that route one challenge. Gateway is nil when the
// route attaches to existing Gateways only; Secret is set with a temporary
// HTTPS server.
type Routes struct {
	Gateway        *istionet.Gateway
	VirtualService *istionet.VirtualService
	Secret         *corev1.Secret
}

// TemporaryHTTPS is the self-signed certificate of a temporary HTTPS server
// and the namespace of the gateway pods, where Istio reads credentialName.
type TemporaryHTTPS struct {
	Namespace       string
	CertPEM, KeyPEM []byte
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

// BuildRoutes returns the objects that route
// GET http://<host>/.well-known/acme-challenge/<token> on the solver's gateway
// workload to the token Service, matching only that exact path so nothing
// else of the host's traffic is touched.
//
// With no server serving the host yet (attach is empty) that is a Gateway
// with a port-80 server for exactly the host, and a VirtualService bound to
// it. Otherwise it is a VirtualService alone, bound to the Gateways that
// serve the host, under the host strings they use: Istio merges routes only
// under the same host string, and orders an exact path before the user's
// catch-all, so the user's other traffic still reaches their app. Under a
// wildcard host string the route also matches the exact authority, so it
// answers for the challenged host only.
//
// With temp, the host's port-80 server redirects to HTTPS and nothing serves
// it there: the objects then also include a Gateway with an HTTPS server for
// exactly the host, using temp's certificate in a Secret, and the
// VirtualService binds to it as well, so the CA can follow the redirect.
func BuildRoutes(ch *v1alpha1.ACMEChallenge, attach []ServingServer, temp *TemporaryHTTPS) Routes {
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

	match := &istioapi.HTTPMatchRequest{
		Uri: &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Exact{Exact: ChallengePathPrefix + ch.Spec.Token}},
	}
	vs := &istionet.VirtualService{ObjectMeta: *meta.DeepCopy()}
	var gw *istionet.Gateway
	var secret *corev1.Secret
	if temp != nil {
		secret = &corev1.Secret{ObjectMeta: *meta.DeepCopy(), Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{corev1.TLSCertKey: temp.CertPEM, corev1.TLSPrivateKeyKey: temp.KeyPEM}}
		secret.Name, secret.Namespace = meta.Name+"-tls", temp.Namespace
		gw = &istionet.Gateway{ObjectMeta: *meta.DeepCopy()}
		gw.Spec.Selector = maps.Clone(sol.GatewaySelector)
		gw.Spec.Servers = []*istioapi.Server{{
			Port:  &istioapi.Port{Number: httpsPort, Name: "https-acme", Protocol: "HTTPS"},
			Hosts: []string{ch.Spec.DNSName},
			Tls:   &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_SIMPLE, CredentialName: secret.Name},
		}}
		attach = append(slices.Clone(attach), ServingServer{Gateway: gw, Host: ch.Spec.DNSName})
	}
	if len(attach) == 0 {
		gw = &istionet.Gateway{ObjectMeta: *meta.DeepCopy()}
		gw.Spec.Selector = maps.Clone(sol.GatewaySelector)
		gw.Spec.Servers = []*istioapi.Server{{
			Port:  &istioapi.Port{Number: httpPort, Name: "http-acme", Protocol: "HTTP"},
			Hosts: []string{ch.Spec.DNSName},
		}}
		vs.Spec.Hosts = []string{ch.Spec.DNSName}
		vs.Spec.Gateways = []string{gw.Namespace + "/" + gw.Name}
	} else {
		for _, s := range attach {
			ref := s.Gateway.Namespace + "/" + s.Gateway.Name
			if !slices.Contains(vs.Spec.Gateways, ref) {
				vs.Spec.Gateways = append(vs.Spec.Gateways, ref)
			}
			if !slices.Contains(vs.Spec.Hosts, s.Host) {
				vs.Spec.Hosts = append(vs.Spec.Hosts, s.Host)
			}
			if strings.HasPrefix(s.Host, "*") {
				match.Authority = &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Exact{Exact: ch.Spec.DNSName}}
			}
		}
	}
	vs.Spec.Http = []*istioapi.HTTPRoute{{
		Name:  "acme-http01",
		Match: []*istioapi.HTTPMatchRequest{match},
		Route: []*istioapi.HTTPRouteDestination{{
			Destination: &istioapi.Destination{
				Host: TokenServiceHost(sol.TokenService),
				Port: &istioapi.PortSelector{Number: uint32(sol.TokenService.Port)},
			},
		}},
	}}
	return Routes{Gateway: gw, VirtualService: vs, Secret: secret}
}

// Describe says, for status messages, how the challenge is routed.
func (r Routes) Describe(ch *v1alpha1.ACMEChallenge) string {
	vs := r.VirtualService
	via := fmt.Sprintf("the existing Gateway(s) %s under host %s", strings.Join(vs.Spec.Gateways, ", "), strings.Join(vs.Spec.Hosts, ", "))
	switch {
	case r.Secret != nil:
		via = fmt.Sprintf("the Gateway(s) %s under host %s, with a temporary HTTPS server in Gateway %s/%s (self-signed certificate in Secret %s/%s)",
			strings.Join(vs.Spec.Gateways, ", "), strings.Join(vs.Spec.Hosts, ", "), r.Gateway.Namespace, r.Gateway.Name, r.Secret.Namespace, r.Secret.Name)
	case r.Gateway != nil:
		via = fmt.Sprintf("Gateway %s/%s", r.Gateway.Namespace, r.Gateway.Name)
	}
	return fmt.Sprintf("routing http://%s%s%s with VirtualService %s/%s on %s to Service %s:%d",
		ch.Spec.DNSName, ChallengePathPrefix, ch.Spec.Token, vs.Namespace, vs.Name, via,
		TokenServiceHost(ch.Spec.Solver.TokenService), ch.Spec.Solver.TokenService.Port)
}
