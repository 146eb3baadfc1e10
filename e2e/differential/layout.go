// Package differential checks the route planner against Istio's own
// translation on generated layouts: for each layout the planner's objects
// are fed, with the users' ones, to istiod's config translation and Envoy
// request simulation, which must agree that the CA reaches the token and
// that no other request moves.
package differential

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/istiomodel"
	"github.com/istio-acme/istio-acme-issuer/solver"
)

// workloadSpec is one gateway workload of a layout: its pod and the
// Service in front of it.
type workloadSpec struct {
	Labels    map[string]string
	Namespace string
	Pod       *corev1.Pod
	// Service is the one the CA reaches (the load balancer's); Extra are
	// other Services in front of the same pods.
	Service *corev1.Service
	Extra   []*corev1.Service
}

// services are all the Services in front of the workload.
func (w workloadSpec) services() []*corev1.Service {
	return append([]*corev1.Service{w.Service}, w.Extra...)
}

// httpPorts are the pod ports behind the CA's Service's ports 80 and 443.
func (w workloadSpec) httpPorts() (http, https int) {
	resolve := func(sp corev1.ServicePort) int {
		if sp.TargetPort.Type == intstr.Int {
			return sp.TargetPort.IntValue()
		}
		for _, c := range w.Pod.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == sp.TargetPort.StrVal {
					return int(cp.ContainerPort)
				}
			}
		}
		return 0
	}
	return resolve(w.Service.Spec.Ports[0]), resolve(w.Service.Spec.Ports[1])
}

// layout is one generated cluster configuration and a challenged host.
type layout struct {
	Workloads       []workloadSpec
	Gateways        []*istionet.Gateway
	VirtualServices []*istionet.VirtualService
	// Secrets are the credential Secrets that exist ("namespace/name").
	Secrets   map[string]bool
	Challenge *v1alpha1.ACMEChallenge
	Host      string
	// Sibling is a challenge for another name of the same order: where
	// both are published and fit, they share one VirtualService.
	Sibling *v1alpha1.ACMEChallenge
	// Probes are the hosts users' requests are tried with.
	Probes []string
	// Dims are the generator's dimensions this layout has, for the
	// summary's counts.
	Dims map[string]bool
	// Mesh is istiod's settings, which both the planner and the
	// translation get.
	Mesh istiomodel.Mesh
}

var (
	epoch      = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	namespaces = []string{"istio-system", "apps", "team-a"}
	exactHosts = []string{"shop.example.com", "api.example.com", "www.example.org", "deep.a.example.com"}
	wildHosts  = []string{"*.example.com", "*.example.org", "*.a.example.com", "*"}
	challenged = []string{"shop.example.com", "api.example.com", "www.example.org", "deep.a.example.com", "new.example.com", "other.example.net"}
	headerName = "x-canary"
)

// dimShared counts the layouts where both names of the order were
// published and share one VirtualService (recorded by the check).
const dimShared = "shared.twoNames"

// generatorDims are the dimensions generate records in a layout's Dims.
var generatorDims = []string{
	"vs.mesh", "match.scheme", "match.authority", "match.queryParams", "match.withoutHeaders",
	"match.sourceNamespace", "match.gateways", "match.port",
	"action.redirect", "action.directResponse", "action.rewrite",
	"workload.third", "service.namedTargetPort", "service.several",
	"mesh.defaultExportToPrivate", "mesh.scopeGatewayToNamespace", dimShared,
}

const tokenServiceCluster = "outbound|8089||istio-acme-issuer.istio-acme-issuer.svc.cluster.local"

// generate draws layout number i of the run with seed.
func generate(seed uint64, i int) *layout {
	r := rand.New(rand.NewPCG(seed, uint64(i)))
	l := &layout{Secrets: map[string]bool{}, Dims: map[string]bool{}}
	pick := func(list []string) string { return list[r.IntN(len(list))] }
	chance := func(p float64) bool { return r.Float64() < p }
	at := func() metav1.Time { return metav1.NewTime(epoch.Add(time.Duration(r.IntN(8)) * time.Second)) }

	// 1-3 gateway workloads; the others have other labels, their own
	// namespace, and now and then Service ports that map to themselves.
	// A Service's target ports are now and then the pod's port names, and
	// now and then a second Service is in front of the same pods.
	nw := 1 + r.IntN(2)
	if chance(0.1) {
		nw = 3
		l.Dims["workload.third"] = true
	}
	for w := range nw {
		labels := map[string]string{"istio": "ingressgateway", "app": "istio-ingressgateway"}
		ns := "istio-system"
		http, https := int32(8080), int32(8443)
		switch w {
		case 1:
			labels = map[string]string{"istio": "edge", "app": "edge-gateway"}
			ns = pick([]string{"edge", "istio-system"})
			if chance(0.5) {
				http, https = 80, 443
			}
		case 2:
			labels = map[string]string{"istio": "internal", "app": "internal-gateway"}
			ns = pick([]string{"internal", "istio-system", "edge"})
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("gw-%d", w), Labels: labels},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "istio-proxy", Ports: []corev1.ContainerPort{
				{Name: "http-gw", ContainerPort: http, Protocol: corev1.ProtocolTCP},
				{Name: "https-gw", ContainerPort: https, Protocol: corev1.ProtocolTCP},
				{Name: "status", ContainerPort: 15021, Protocol: corev1.ProtocolTCP},
			}}}},
		}
		httpTarget, httpsTarget := intstr.FromInt32(http), intstr.FromInt32(https)
		if chance(0.2) {
			httpTarget, httpsTarget = intstr.FromString("http-gw"), intstr.FromString("https-gw")
			l.Dims["service.namedTargetPort"] = true
		}
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("gateway-%d", w)},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: labels, ClusterIP: fmt.Sprintf("10.96.0.%d", 10+w), Ports: []corev1.ServicePort{
				{Name: "http2", Port: 80, TargetPort: httpTarget, Protocol: corev1.ProtocolTCP},
				{Name: "https", Port: 443, TargetPort: httpsTarget, Protocol: corev1.ProtocolTCP},
			}},
		}
		spec := workloadSpec{Labels: labels, Namespace: ns, Pod: pod, Service: svc}
		if chance(0.15) {
			// An internal Service in front of the same pods: its port 80
			// to the same pod port, or to another one the pods do not
			// listen on, and the status port.
			extra := &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("gateway-%d-internal", w)},
				Spec: corev1.ServiceSpec{Selector: labels, ClusterIP: fmt.Sprintf("10.96.1.%d", 10+w), Ports: []corev1.ServicePort{
					{Name: "http", Port: 80, TargetPort: []intstr.IntOrString{intstr.FromString("http-gw"), intstr.FromInt32(9080)}[r.IntN(2)], Protocol: corev1.ProtocolTCP},
					{Name: "status-port", Port: 15021, TargetPort: intstr.FromString("status"), Protocol: corev1.ProtocolTCP},
				}},
			}
			spec.Extra = append(spec.Extra, extra)
			l.Dims["service.several"] = true
		}
		l.Workloads = append(l.Workloads, spec)
	}

	hostEntry := func() string {
		h := pick(exactHosts)
		if chance(0.5) {
			h = pick(wildHosts)
		}
		switch r.IntN(8) {
		case 0:
			return "./" + h
		case 1:
			return "*/" + h
		case 2:
			return pick(namespaces) + "/" + h
		}
		return h
	}

	// 1-4 Gateways.
	ng := 1 + r.IntN(4)
	for g := range ng {
		gw := &istionet.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: pick(namespaces), Name: fmt.Sprintf("gw%d", g), CreationTimestamp: at()}}
		switch x := r.Float64(); {
		case x < 0.05:
			// no selector: every gateway workload
		case x < 0.1:
			gw.Spec.Selector = map[string]string{"istio": "egressgateway"}
		default:
			gw.Spec.Selector = map[string]string{"istio": l.Workloads[r.IntN(nw)].Labels["istio"]}
		}
		ns := 1 + r.IntN(3)
		for s := range ns {
			srv := &istioapi.Server{Hosts: []string{hostEntry()}}
			// "*/*" only ever alone: istiod 1.31 fails on a server that
			// lists it before other hosts.
			if extra := hostEntry(); chance(0.3) && srv.Hosts[0] != "*/*" && extra != "*/*" {
				srv.Hosts = append(srv.Hosts, extra)
			}
			if chance(0.55) {
				srv.Port = &istioapi.Port{Number: []uint32{80, 80, 8080}[r.IntN(3)], Name: fmt.Sprintf("http-%d", s), Protocol: "HTTP"}
				if chance(0.3) {
					srv.Tls = &istioapi.ServerTLSSettings{HttpsRedirect: true}
				}
			} else {
				srv.Port = &istioapi.Port{Number: []uint32{443, 443, 8443}[r.IntN(3)], Name: fmt.Sprintf("https-%d", s), Protocol: "HTTPS"}
				cred := fmt.Sprintf("cred-%d-%d", g, s)
				srv.Tls = &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_SIMPLE, CredentialName: cred}
				switch x := r.Float64(); {
				case x < 0.05:
					srv.Tls.Mode = istioapi.ServerTLSSettings_MUTUAL
				case x < 0.15:
					srv.Tls = &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_PASSTHROUGH}
				}
				if chance(0.6) {
					for _, w := range l.Workloads {
						l.Secrets[w.Namespace+"/"+cred] = true
					}
				}
			}
			gw.Spec.Servers = append(gw.Spec.Servers, srv)
		}
		l.Gateways = append(l.Gateways, gw)
	}

	// 0-6 VirtualServices, now and then a delegate.
	nv := r.IntN(7)
	for v := range nv {
		ns := pick(namespaces)
		vs := &istionet.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("vs%d", v), CreationTimestamp: at()}}
		h := pick(exactHosts)
		if chance(0.4) {
			h = pick(wildHosts)
		}
		vs.Spec.Hosts = []string{h}
		if chance(0.2) {
			vs.Spec.Hosts = append(vs.Spec.Hosts, pick(exactHosts))
		}
		for range 1 + r.IntN(2) {
			gw := l.Gateways[r.IntN(ng)]
			ref := gw.Namespace + "/" + gw.Name
			if gw.Namespace == ns && chance(0.5) {
				ref = gw.Name
			}
			if !slices.Contains(vs.Spec.Gateways, ref) {
				vs.Spec.Gateways = append(vs.Spec.Gateways, ref)
			}
		}
		if chance(0.12) {
			// One VirtualService for the mesh and a gateway, whose routes
			// say which of them they are for (match.gateways).
			vs.Spec.Gateways = append(vs.Spec.Gateways, "mesh")
			l.Dims["vs.mesh"] = true
		}
		switch x := r.Float64(); {
		case x < 0.1:
			vs.Spec.ExportTo = []string{"."}
		case x < 0.15:
			vs.Spec.ExportTo = []string{"istio-system"}
		case x < 0.2:
			vs.Spec.ExportTo = []string{"*"}
		}
		for k := range 1 + r.IntN(3) {
			dest := fmt.Sprintf("app-%d-%d.%s.svc.cluster.local", v, k, ns)
			route := &istioapi.HTTPRoute{Name: fmt.Sprintf("r%d", k), Route: []*istioapi.HTTPRouteDestination{{Destination: &istioapi.Destination{Host: dest, Port: &istioapi.PortSelector{Number: 80}}}}}
			if m := randomMatch(r); m != nil {
				route.Match = []*istioapi.HTTPMatchRequest{m}
			}
			if chance(0.35) {
				route.Match = moreConditions(r, route.Match, vs.Spec.Gateways, l)
			}
			if chance(0.08) {
				// A delegate holding the routes under /d.
				del := &istionet.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("vs%d-del%d", v, k), CreationTimestamp: at()}}
				del.Spec.Http = []*istioapi.HTTPRoute{
					{Name: "d-x", Match: []*istioapi.HTTPMatchRequest{prefix("/d/x")}, Route: route.Route},
					{Name: "d-wk", Match: []*istioapi.HTTPMatchRequest{prefix("/d/.well-known")}, Route: route.Route},
				}
				l.VirtualServices = append(l.VirtualServices, del)
				route = &istioapi.HTTPRoute{Name: fmt.Sprintf("r%d", k), Match: []*istioapi.HTTPMatchRequest{prefix("/d")}, Delegate: &istioapi.Delegate{Name: del.Name, Namespace: ns}}
			}
			if route.Delegate == nil {
				randomAction(r, route, l)
			}
			vs.Spec.Http = append(vs.Spec.Http, route)
		}
		if chance(0.2) {
			// A tls route: what makes istiod build a filter chain for a
			// passthrough server (for its sniHosts, a subset of the hosts).
			sni := vs.Spec.Hosts[r.IntN(len(vs.Spec.Hosts))]
			m := &istioapi.TLSMatchAttributes{SniHosts: []string{sni}}
			if chance(0.2) {
				m.Port = []uint32{443, 8443}[r.IntN(2)]
			}
			// Source conditions, which istiod requires all of (unlike an
			// HTTP match's).
			w := l.Workloads[r.IntN(len(l.Workloads))]
			if chance(0.15) {
				m.SourceNamespace = pick([]string{w.Namespace, "elsewhere"})
			}
			if chance(0.15) {
				m.SourceLabels = map[string]string{"istio": w.Labels["istio"]}
			}
			vs.Spec.Tls = []*istioapi.TLSRoute{{Match: []*istioapi.TLSMatchAttributes{m},
				Route: []*istioapi.RouteDestination{{Destination: &istioapi.Destination{Host: fmt.Sprintf("tls-%d.%s.svc.cluster.local", v, ns), Port: &istioapi.PortSelector{Number: 443}}}}}}
		}
		l.VirtualServices = append(l.VirtualServices, vs)
	}

	l.Host = pick(challenged)
	var selectors []v1alpha1.GatewayWorkloadSelector
	for _, w := range l.Workloads {
		selectors = append(selectors, v1alpha1.GatewayWorkloadSelector{Selector: map[string]string{"istio": w.Labels["istio"]}, Namespace: w.Namespace})
	}
	// The request comes from any of the namespaces: the challenge's
	// VirtualService is written there, so the servers' ns/host forms
	// admit or refuse it as they would that namespace's own routes.
	requester := pick(namespaces)
	order := fmt.Sprintf("layout-%d", i)
	l.Challenge = &v1alpha1.ACMEChallenge{
		ObjectMeta: metav1.ObjectMeta{Namespace: requester, Name: order + "-a", UID: types.UID(order + "-a"), Labels: map[string]string{v1alpha1.LabelOrder: order}},
		Spec: v1alpha1.ACMEChallengeSpec{Order: order, DNSName: l.Host, Token: "tok-" + fmt.Sprint(i), Key: "key", Solver: v1alpha1.IstioHTTP01Solver{
			Gateways:         selectors,
			GatewayNamespace: "istio-system",
			TokenService:     v1alpha1.TokenServiceReference{Name: "istio-acme-issuer", Namespace: "istio-acme-issuer", Port: 8089},
		}},
	}
	probes := map[string]bool{l.Host: true, "other.example.net": true, "zz.example.com": true, "zz.a.example.com": true, "example.com": true}
	for _, h := range exactHosts {
		probes[h] = true
	}
	for h := range probes {
		l.Probes = append(l.Probes, h)
	}
	slices.Sort(l.Probes)

	// istiod's own settings, drawn last so that a seed's objects stay what
	// they were before these were drawn.
	if chance(0.15) {
		l.Mesh.DefaultVirtualServiceExportTo = []string{"."}
		l.Dims["mesh.defaultExportToPrivate"] = true
	}
	if chance(0.15) {
		l.Mesh.ScopeGatewayToNamespace = true
		l.Dims["mesh.scopeGatewayToNamespace"] = true
		if chance(0.5) {
			// Our own Gateways where one of the workloads' pods are.
			l.Challenge.Spec.Solver.GatewayNamespace = l.Workloads[r.IntN(len(l.Workloads))].Namespace
		}
	}
	// The order's second name, drawn last as well.
	sib := l.Challenge.DeepCopy()
	sib.Name, sib.UID = order+"-b", types.UID(order+"-b")
	sib.Spec.DNSName = pick(slices.DeleteFunc(slices.Clone(challenged), func(h string) bool { return h == l.Host }))
	sib.Spec.Token = sib.Spec.Token + "-b"
	l.Sibling = sib
	if !slices.Contains(l.Probes, sib.Spec.DNSName) {
		l.Probes = append(l.Probes, sib.Spec.DNSName)
		slices.Sort(l.Probes)
	}
	return l
}

// moreConditions adds to the route's first match (or a new one) one of the
// conditions users write beside the path: scheme, authority, query
// parameters, absent headers, the source namespace, the gateways or the
// port the route is for.
func moreConditions(r *rand.Rand, ms []*istioapi.HTTPMatchRequest, gateways []string, l *layout) []*istioapi.HTTPMatchRequest {
	if len(ms) == 0 {
		ms = []*istioapi.HTTPMatchRequest{{}}
	}
	m := ms[0]
	pick := func(list []string) string { return list[r.IntN(len(list))] }
	switch r.IntN(9) {
	case 0:
		m.Scheme = &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Exact{Exact: pick([]string{"http", "https"})}}
		l.Dims["match.scheme"] = true
	case 1:
		switch r.IntN(3) {
		case 0:
			m.Authority = &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Exact{Exact: pick(challenged)}}
		case 1:
			m.Authority = &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Prefix{Prefix: pick([]string{"shop.", "new.", "api"})}}
		default:
			m.Authority = &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Regex{Regex: pick([]string{".*\\.example\\.com", "shop\\..*", "[a-z]+\\.example\\.org"})}}
		}
		l.Dims["match.authority"] = true
	case 2:
		m.QueryParams = map[string]*istioapi.StringMatch{"debug": {MatchType: &istioapi.StringMatch_Exact{Exact: "1"}}}
		l.Dims["match.queryParams"] = true
	case 3:
		m.WithoutHeaders = map[string]*istioapi.StringMatch{headerName: {MatchType: &istioapi.StringMatch_Exact{Exact: "true"}}}
		l.Dims["match.withoutHeaders"] = true
	case 4:
		m.SourceNamespace = pick([]string{"istio-system", "edge", "apps"})
		l.Dims["match.sourceNamespace"] = true
	case 5, 6:
		// The gateways a route is for: one of the VirtualService's, or
		// the mesh only (the route is not on any gateway).
		m.Gateways = []string{gateways[r.IntN(len(gateways))]}
		if r.IntN(4) == 0 {
			m.Gateways = []string{"mesh"}
		}
		l.Dims["match.gateways"] = true
	default:
		m.Port = []uint32{80, 8080, 443, 8443}[r.IntN(4)]
		l.Dims["match.port"] = true
	}
	return ms
}

// randomAction now and then gives the route another action than its
// destination: a redirect (the common scheme-only one to HTTPS among
// them), a direct response, or a rewrite before the destination.
func randomAction(r *rand.Rand, route *istioapi.HTTPRoute, l *layout) {
	switch x := r.Float64(); {
	case x < 0.07:
		red := &istioapi.HTTPRedirect{RedirectCode: []uint32{0, 301, 302, 308}[r.IntN(4)]}
		switch r.IntN(5) {
		case 0, 1:
			red.Scheme = "https"
		case 2:
			red.Authority = "www.example.org"
		case 3:
			red.RedirectPort = &istioapi.HTTPRedirect_Port{Port: 8443}
			red.Scheme = "https"
		default:
			red.Uri = "/moved"
		}
		route.Route, route.Redirect = nil, red
		l.Dims["action.redirect"] = true
	case x < 0.1:
		route.Route = nil
		route.DirectResponse = &istioapi.HTTPDirectResponse{Status: []uint32{200, 404, 503}[r.IntN(3)]}
		l.Dims["action.directResponse"] = true
	case x < 0.14:
		route.Rewrite = &istioapi.HTTPRewrite{Uri: "/rewritten"}
		if r.IntN(2) == 0 {
			route.Rewrite = &istioapi.HTTPRewrite{Authority: "backend.internal"}
		}
		l.Dims["action.rewrite"] = true
	}
}

func prefix(p string) *istioapi.HTTPMatchRequest {
	return &istioapi.HTTPMatchRequest{Uri: &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Prefix{Prefix: p}}}
}

// randomMatch draws a route condition; nil is no match (a catch-all).
func randomMatch(r *rand.Rand) *istioapi.HTTPMatchRequest {
	switch r.IntN(11) {
	case 0:
		return nil
	case 1:
		return prefix("/")
	case 2:
		return prefix("/.well-known")
	case 3:
		return prefix("/app")
	case 4:
		return &istioapi.HTTPMatchRequest{Uri: &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Exact{Exact: "/app"}}}
	case 5:
		return &istioapi.HTTPMatchRequest{Uri: &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Regex{Regex: "/api/.*"}}}
	case 6:
		return &istioapi.HTTPMatchRequest{Uri: &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Regex{Regex: ".*"}}}
	case 7:
		return &istioapi.HTTPMatchRequest{Headers: map[string]*istioapi.StringMatch{headerName: {MatchType: &istioapi.StringMatch_Exact{Exact: "true"}}}}
	case 8:
		return &istioapi.HTTPMatchRequest{IgnoreUriCase: true, Uri: &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Prefix{Prefix: "/.WELL-KNOWN/acme"}}}
	case 9:
		return &istioapi.HTTPMatchRequest{Uri: &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Regex{Regex: "/\\.well-known/.*"}}}
	}
	return &istioapi.HTTPMatchRequest{Uri: &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Prefix{Prefix: "/"}}, Method: &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Exact{Exact: "GET"}}}
}

// workloads describes the layout's workloads for the planner.
func (l *layout) workloads() []*solver.GatewayWorkload {
	var out []*solver.GatewayWorkload
	for i, w := range l.Workloads {
		var svcs []corev1.Service
		for _, svc := range w.services() {
			svcs = append(svcs, *svc)
		}
		gw := solver.NewGatewayWorkload(l.Challenge.Spec.Solver.Gateways[i], []corev1.Pod{*w.Pod}, svcs)
		gw.Mesh = l.Mesh
		out = append(out, gw)
	}
	return out
}
