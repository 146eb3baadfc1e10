// Package solver answers ACME HTTP-01 challenges through Istio: it builds the
// Gateway and VirtualService that route a challenge's token to the token
// server, keeps them in place while the challenge lives, and serves the
// tokens from every replica.
package solver

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/dnsname"
	"github.com/istio-acme/istio-acme-issuer/internal/istiomodel"
	"github.com/istio-acme/istio-acme-issuer/internal/kubeutil"
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

// Routes are the objects that route one challenge: its VirtualServices,
// the Gateways it needs of its own, and the certificates of its temporary
// HTTPS servers.
type Routes struct {
	Gateways        []*istionet.Gateway
	VirtualServices []*istionet.VirtualService
	Secrets         []*corev1.Secret
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
	return kubeutil.LabelKey(namespace, name)
}

// TokenServiceHost is the cluster-local host name of the token Service.
func TokenServiceHost(ref v1alpha1.TokenServiceReference) string {
	return fmt.Sprintf("%s.%s.svc.cluster.local", ref.Name, ref.Namespace)
}

// BuildRoutes returns the objects that route
// GET http://<host>/.well-known/acme-challenge/<token> on each planned
// gateway workload to the token Service. The route matches only that exact
// path, for that exact host (its authority), so whichever virtual host it
// joins, nothing else of anybody's traffic is touched.
//
// Each binding puts the route into an existing virtual host: the
// VirtualService binds to the Gateway under the virtual host's name. A
// workload that needs servers of our own gets one Gateway selecting its
// pods: a port-80 server for exactly the host (nothing serves it there),
// and/or an HTTPS server for exactly the host with a temporary self-signed
// certificate in a Secret in the gateway pods' namespace (the host is
// redirected to HTTPS where nothing can complete its handshake yet).
//
// One VirtualService carries every binding, unless split: then one per
// binding, for layouts where binding every Gateway under every name would
// reach virtual hosts it must not. temp holds the certificates by workload
// index; without one the Secret is built empty (for planning).
func BuildRoutes(ch *v1alpha1.ACMEChallenge, workloads []WorkloadRoute, split bool, temp map[int]*TemporaryHTTPS) Routes {
	sol := ch.Spec.Solver
	key := ChallengeKey(ch.Namespace, ch.Name)
	host := dnsname.Canonical(ch.Spec.DNSName)
	meta := func(name, namespace string) metav1.ObjectMeta {
		labels := map[string]string{LabelManagedBy: ManagedByValue, LabelChallenge: key}
		if uid := ch.Labels[LabelCertManagerChallenge]; uid != "" {
			labels[LabelCertManagerChallenge] = uid
		}
		m := metav1.ObjectMeta{
			Name:        name,
			Namespace:   namespace,
			Labels:      labels,
			Annotations: map[string]string{AnnotationChallenge: ch.Namespace + "/" + ch.Name},
		}
		if namespace == ch.Namespace && ch.UID != "" {
			// Goes with the challenge through the garbage collector, with
			// no finalizer round trip (see NeedsFinalizer).
			m.OwnerReferences = []metav1.OwnerReference{{
				APIVersion: v1alpha1.GroupVersion.String(),
				Kind:       "ACMEChallenge",
				Name:       ch.Name,
				UID:        ch.UID,
			}}
		}
		return m
	}
	// The challenge's VirtualServices are written in the namespace the
	// request comes from, as that namespace would write them, so the ns/host
	// restrictions of the Gateways' servers apply to it and not to the
	// controller; a server of our own admits only that namespace's routes.
	requester := RequesterNamespace(ch)
	ownServerHost := requester + "/" + host
	var out Routes
	var bindings []Binding
	for _, w := range workloads {
		bindings = appendNewBinding(bindings, w.Bindings...)
		if !w.OwnHTTP && !w.OwnHTTPS {
			continue
		}
		gw := &istionet.Gateway{ObjectMeta: meta(objectName(ch, w.Index), sol.GatewayNamespace)}
		if w.Index < len(sol.Gateways) {
			gw.Spec.Selector = maps.Clone(sol.Gateways[w.Index].Selector)
		}
		if w.OwnHTTP {
			gw.Spec.Servers = append(gw.Spec.Servers, &istioapi.Server{
				Port:  &istioapi.Port{Number: httpPort, Name: "http-acme", Protocol: "HTTP"},
				Hosts: []string{ownServerHost},
			})
		}
		if w.OwnHTTPS {
			t := temp[w.Index]
			if t == nil {
				t = &TemporaryHTTPS{}
			}
			secret := &corev1.Secret{ObjectMeta: meta(TemporaryHTTPSSecretName(ch, w.Index), t.Namespace), Type: corev1.SecretTypeTLS,
				Data: map[string][]byte{corev1.TLSCertKey: t.CertPEM, corev1.TLSPrivateKeyKey: t.KeyPEM}}
			out.Secrets = append(out.Secrets, secret)
			gw.Spec.Servers = append(gw.Spec.Servers, &istioapi.Server{
				Port:  &istioapi.Port{Number: httpsPort, Name: "https-acme", Protocol: "HTTPS"},
				Hosts: []string{ownServerHost},
				Tls:   &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_SIMPLE, CredentialName: secret.Name},
			})
		}
		out.Gateways = append(out.Gateways, gw)
		bindings = appendNewBinding(bindings, Binding{Gateway: istiomodel.GatewayKey(gw), Host: host})
	}

	vs := func(name string) *istionet.VirtualService {
		v := &istionet.VirtualService{ObjectMeta: meta(name, requester)}
		// Visible to every gateway, whatever the mesh's default exportTo.
		v.Spec.ExportTo = []string{"*"}
		v.Spec.Http = []*istioapi.HTTPRoute{challengeRoute(ch, host)}
		return v
	}
	if !split {
		v := vs(objectName(ch, 0))
		for _, b := range bindings {
			if !slices.Contains(v.Spec.Gateways, b.Gateway) {
				v.Spec.Gateways = append(v.Spec.Gateways, b.Gateway)
			}
			if !slices.Contains(v.Spec.Hosts, b.Host) {
				v.Spec.Hosts = append(v.Spec.Hosts, b.Host)
			}
		}
		out.VirtualServices = []*istionet.VirtualService{v}
		return out
	}
	for i, b := range bindings {
		name := objectName(ch, 0)
		if i > 0 {
			name += fmt.Sprintf("-v%d", i)
		}
		v := vs(name)
		v.Spec.Gateways, v.Spec.Hosts = []string{b.Gateway}, []string{b.Host}
		out.VirtualServices = append(out.VirtualServices, v)
	}
	return out
}

// NeedsFinalizer reports whether some of the routes are not owned by the
// challenge (they live outside its namespace): its finalizer must then be
// in place before they are written, so that they go with it.
func (r Routes) NeedsFinalizer() bool {
	objs := asObjects(r.Secrets)
	for _, k := range routeKinds {
		objs = append(objs, k.built(r)...)
	}
	return slices.ContainsFunc(objs, func(o client.Object) bool { return len(o.GetOwnerReferences()) == 0 })
}

func appendNewBinding(list []Binding, bs ...Binding) []Binding {
	for _, b := range bs {
		if !slices.Contains(list, b) {
			list = append(list, b)
		}
	}
	return list
}

// challengeRouteName names the challenge route in a VirtualService.
const challengeRouteName = "acme-http01"

// challengeRoute answers the token path for the host only: an exact path,
// and an authority of exactly the host (with any port), so that in a
// virtual host shared with other names it catches nothing of theirs.
func challengeRoute(ch *v1alpha1.ACMEChallenge, host string) *istioapi.HTTPRoute {
	sol := ch.Spec.Solver
	return &istioapi.HTTPRoute{
		Name: challengeRouteName,
		Match: []*istioapi.HTTPMatchRequest{{
			Uri:       &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Exact{Exact: ChallengePathPrefix + ch.Spec.Token}},
			Authority: &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Regex{Regex: regexp.QuoteMeta(host) + "(:[0-9]+)?"}},
		}},
		Route: []*istioapi.HTTPRouteDestination{{
			Destination: &istioapi.Destination{
				Host: TokenServiceHost(sol.TokenService),
				Port: &istioapi.PortSelector{Number: uint32(sol.TokenService.Port)},
			},
		}},
	}
}

// Describe says, for status messages, how the challenge is routed.
func (p *Plan) Describe(ch *v1alpha1.ACMEChallenge, workloads []*GatewayWorkload) string {
	var via []string
	for _, w := range p.Workloads {
		where := w.Via
		if w.Index < len(workloads) && workloads[w.Index] != nil {
			where += " on " + workloads[w.Index].Describe()
		}
		via = append(via, where)
	}
	return fmt.Sprintf("routing http://%s%s%s through %s to Service %s:%d",
		ch.Spec.DNSName, ChallengePathPrefix, ch.Spec.Token, strings.Join(via, "; "),
		TokenServiceHost(ch.Spec.Solver.TokenService), ch.Spec.Solver.TokenService.Port)
}

// notOurs selects objects that this controller did not create.
func notOurs() (client.MatchingLabelsSelector, error) {
	req, err := labels.NewRequirement(LabelManagedBy, selection.NotEquals, []string{ManagedByValue})
	if err != nil {
		return client.MatchingLabelsSelector{}, err
	}
	return client.MatchingLabelsSelector{Selector: labels.NewSelector().Add(*req)}, nil
}
