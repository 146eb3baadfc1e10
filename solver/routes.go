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

// Routes are the objects that route one challenge: one VirtualService, and
// the Gateways (and temporary certificates) the challenge needs of its own.
type Routes struct {
	Gateways       []*istionet.Gateway
	VirtualService *istionet.VirtualService
	Secrets        []*corev1.Secret
}

// RouteTarget is one gateway workload the challenge is routed on: the
// servers of users' Gateways that serve the host there (none: a Gateway of
// our own is created), and, when those redirect to HTTPS with nothing
// serving it, the certificate of a temporary HTTPS server.
type RouteTarget struct {
	// Index of the workload in the solver's gateways; it names the objects
	// created for it.
	Index  int
	Attach []ServingServer
	Temp   *TemporaryHTTPS
}

// TemporaryHTTPS is the self-signed certificate of a temporary HTTPS server
// and the namespace of the gateway pods, where Istio reads credentialName.
type TemporaryHTTPS struct {
	Namespace       string
	CertPEM, KeyPEM []byte
}

// objectName names the objects of a challenge on the workload at index.
func objectName(ch *v1alpha1.ACMEChallenge, index int) string {
	name := "acme-" + ChallengeKey(ch.Namespace, ch.Name)
	if index > 0 {
		name += fmt.Sprintf("-%d", index)
	}
	return name
}

// TemporaryHTTPSSecretName is the Secret holding the certificate of the
// challenge's temporary HTTPS server on the workload at index.
func TemporaryHTTPSSecretName(ch *v1alpha1.ACMEChallenge, index int) string {
	return objectName(ch, index) + "-tls"
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
// GET http://<host>/.well-known/acme-challenge/<token> on each target
// gateway workload to the token Service, matching only that exact path so
// nothing else of the host's traffic is touched.
//
// On a target where no server serves the host yet (no Attach) that is a
// Gateway with a port-80 server for exactly the host, selecting the
// workload. Otherwise the route binds to the Gateways that serve the host,
// under the host strings they use: Istio merges routes only under the same
// host string, and orders an exact path before the user's catch-all, so the
// user's other traffic still reaches their app. Under a wildcard host
// string the route also matches the exact authority, so it answers for the
// challenged host only.
//
// With Temp, the host's port-80 server redirects to HTTPS and nothing serves
// it there: the objects then also include a Gateway with an HTTPS server for
// exactly the host, using Temp's certificate in a Secret, so the CA can
// follow the redirect.
//
// One VirtualService carries the route for every target.
func BuildRoutes(ch *v1alpha1.ACMEChallenge, targets []RouteTarget) Routes {
	sol := ch.Spec.Solver
	key := ChallengeKey(ch.Namespace, ch.Name)
	meta := func(name, namespace string) metav1.ObjectMeta {
		return metav1.ObjectMeta{
			Name:        name,
			Namespace:   namespace,
			Labels:      map[string]string{LabelManagedBy: ManagedByValue, LabelChallenge: key},
			Annotations: map[string]string{AnnotationChallenge: ch.Namespace + "/" + ch.Name},
		}
	}
	selector := func(index int) map[string]string {
		if index < len(sol.Gateways) {
			return maps.Clone(sol.Gateways[index].Selector)
		}
		return nil
	}

	match := &istioapi.HTTPMatchRequest{
		Uri: &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Exact{Exact: ChallengePathPrefix + ch.Spec.Token}},
	}
	out := Routes{VirtualService: &istionet.VirtualService{ObjectMeta: meta(objectName(ch, 0), sol.GatewayNamespace)}}
	vs := out.VirtualService
	bind := func(gw *istionet.Gateway, host string) {
		ref := gw.Namespace + "/" + gw.Name
		if !slices.Contains(vs.Spec.Gateways, ref) {
			vs.Spec.Gateways = append(vs.Spec.Gateways, ref)
		}
		if !slices.Contains(vs.Spec.Hosts, host) {
			vs.Spec.Hosts = append(vs.Spec.Hosts, host)
		}
		if strings.HasPrefix(host, "*") {
			match.Authority = &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Exact{Exact: ch.Spec.DNSName}}
		}
	}
	for _, t := range targets {
		if len(t.Attach) == 0 {
			gw := &istionet.Gateway{ObjectMeta: meta(objectName(ch, t.Index), sol.GatewayNamespace)}
			gw.Spec.Selector = selector(t.Index)
			gw.Spec.Servers = []*istioapi.Server{{
				Port:  &istioapi.Port{Number: httpPort, Name: "http-acme", Protocol: "HTTP"},
				Hosts: []string{ch.Spec.DNSName},
			}}
			out.Gateways = append(out.Gateways, gw)
			bind(gw, ch.Spec.DNSName)
			continue
		}
		for _, s := range t.Attach {
			bind(s.Gateway, s.Host)
		}
		if t.Temp != nil {
			secret := &corev1.Secret{ObjectMeta: meta(TemporaryHTTPSSecretName(ch, t.Index), t.Temp.Namespace), Type: corev1.SecretTypeTLS,
				Data: map[string][]byte{corev1.TLSCertKey: t.Temp.CertPEM, corev1.TLSPrivateKeyKey: t.Temp.KeyPEM}}
			gw := &istionet.Gateway{ObjectMeta: meta(objectName(ch, t.Index), sol.GatewayNamespace)}
			gw.Spec.Selector = selector(t.Index)
			gw.Spec.Servers = []*istioapi.Server{{
				Port:  &istioapi.Port{Number: httpsPort, Name: "https-acme", Protocol: "HTTPS"},
				Hosts: []string{ch.Spec.DNSName},
				Tls:   &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_SIMPLE, CredentialName: secret.Name},
			}}
			out.Secrets = append(out.Secrets, secret)
			out.Gateways = append(out.Gateways, gw)
			bind(gw, ch.Spec.DNSName)
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
	return out
}

// Describe says, for status messages, how the challenge is routed.
func (r Routes) Describe(ch *v1alpha1.ACMEChallenge) string {
	vs := r.VirtualService
	var own, users []string
	for _, ref := range vs.Spec.Gateways {
		if slices.ContainsFunc(r.Gateways, func(g *istionet.Gateway) bool { return g.Namespace+"/"+g.Name == ref }) {
			own = append(own, ref)
		} else {
			users = append(users, ref)
		}
	}
	var via []string
	if len(users) > 0 {
		via = append(via, fmt.Sprintf("the existing Gateway(s) %s under host %s", strings.Join(users, ", "), strings.Join(vs.Spec.Hosts, ", ")))
	}
	for _, gw := range r.Gateways {
		srv := gw.Spec.Servers[0]
		if srv.GetTls().GetCredentialName() != "" {
			via = append(via, fmt.Sprintf("a temporary HTTPS server in Gateway %s/%s (self-signed certificate in Secret %s/%s)",
				gw.Namespace, gw.Name, r.secretNamespace(srv.GetTls().GetCredentialName()), srv.GetTls().GetCredentialName()))
		} else {
			via = append(via, fmt.Sprintf("Gateway %s/%s", gw.Namespace, gw.Name))
		}
	}
	return fmt.Sprintf("routing http://%s%s%s with VirtualService %s/%s on %s to Service %s:%d",
		ch.Spec.DNSName, ChallengePathPrefix, ch.Spec.Token, vs.Namespace, vs.Name, strings.Join(via, " and "),
		TokenServiceHost(ch.Spec.Solver.TokenService), ch.Spec.Solver.TokenService.Port)
}

func (r Routes) secretNamespace(name string) string {
	for _, s := range r.Secrets {
		if s.Name == name {
			return s.Namespace
		}
	}
	return ""
}
