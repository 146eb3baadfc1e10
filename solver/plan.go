package solver

import (
	"fmt"
	"slices"
	"strings"
	"time"

	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/dnsname"
	"github.com/istio-acme/istio-acme-issuer/internal/istiomodel"
	"github.com/istio-acme/istio-acme-issuer/internal/metrics"
)

// PlanInput is everything the route planner reads.
type PlanInput struct {
	Challenge *v1alpha1.ACMEChallenge
	// Gateways and VirtualServices are the cluster's objects that this
	// controller did not create.
	Gateways        []*istionet.Gateway
	VirtualServices []*istionet.VirtualService
	// Workloads are the gateway workloads of the solver, by index in its
	// spec.solver.istio.gateways.
	Workloads []*GatewayWorkload
	// Credential tells whether an HTTPS server's certificate Secret can
	// serve a TLS handshake.
	Credential func(namespace, name string) CredentialState
	// Now is when the challenge's objects are created: istiod orders
	// objects by creation time.
	Now time.Time
	// Models, when set, keeps the models of the users' objects between
	// plans.
	Models *istiomodel.Cache
}

// Plan is how a challenge is routed: the objects to publish and, per
// routed workload, how the CA's request reaches the token.
type Plan struct {
	Workloads []WorkloadRoute
	// Split publishes one VirtualService per binding, where a single one
	// bound to every Gateway would add the route where it must not go.
	Split bool
}

// WorkloadRoute says how the challenge is routed on one gateway workload.
type WorkloadRoute struct {
	// Index of the workload in the solver's gateways.
	Index int
	// Bindings put the challenge route into virtual hosts that users'
	// Gateways (or our own) already build.
	Bindings []Binding
	// OwnHTTP adds a port-80 server for exactly the host, in a Gateway of
	// our own: nothing serves the host where the CA arrives.
	OwnHTTP bool
	// OwnHTTPS adds an HTTPS server for exactly the host with a temporary
	// self-signed certificate: the host's port-80 server redirects to HTTPS
	// and no server can complete a handshake for the host there yet.
	OwnHTTPS bool
	// Via describes, for messages, how the CA's request travels to the
	// token: set on the plan's candidates once they pass.
	Via string
}

// Binding binds the challenge VirtualService to Gateway ("namespace/name")
// under Host, the name of the virtual host it joins.
type Binding struct {
	Gateway, Host string
}

// Refusal says why the challenge cannot be routed: the metrics reason and
// the message for the request.
type Refusal struct {
	Reason, Message string
	// Attempt is the plan the message judges, when there was one: the
	// most natural candidate, which would not have worked.
	Attempt *Plan
	// MissingCredential is set when all that keeps the CA from the
	// token is a user's HTTPS server for exactly the host whose credential
	// Secret does not exist yet: once that Secret holds any certificate,
	// the route goes behind that server.
	MissingCredential *SecretRef
	// Situation is the message's first part, which says where the CA's
	// request goes, without its advice.
	Situation string
}

// SecretRef names a Secret.
type SecretRef struct {
	Namespace, Name string
}

// PlanRoutes decides where the challenge route goes, from the CA's path:
// plain HTTP on the port behind each gateway Service's port 80, then, if
// the host is redirected, HTTPS on the port behind 443. On each workload
// that serves the host (every workload when none does), the route joins the
// virtual host Envoy picks for the host there, bound through a server that
// builds it; where no virtual host serves the host, it gets a virtual host
// for exactly the host, through a user's server that covers it or a Gateway
// of our own. Every candidate is checked on the model of every workload:
// the CA's request must reach the token, and no other request may change
// where it goes. The first candidate that passes is the plan. When none
// does on a workload, the refusal is that of the first candidate on which
// the CA's request would not reach the token or, when every candidate
// reaches it, of the first that would move another request.
func PlanRoutes(in PlanInput) (*Plan, *Refusal) {
	ch := in.Challenge
	host := dnsname.Canonical(ch.Spec.DNSName)
	p := &planner{in: in, host: host, path: ChallengePathPrefix + ch.Spec.Token, creds: map[string]CredentialState{}}
	p.users = make([]*istiomodel.Proxy, len(in.Workloads))
	p.vsIndex = make([]*istiomodel.Index, len(in.Workloads))
	for i, w := range in.Workloads {
		key := w.Namespace + "|" + describeTarget(w.Target)
		p.users[i], p.vsIndex[i] = in.Models.Model(key, in.Gateways, in.VirtualServices, &w.Workload)
	}

	var serving []int
	for i, w := range in.Workloads {
		if p.serves(i, w) {
			serving = append(serving, i)
		}
	}
	if len(serving) == 0 {
		// Nothing serves the host yet: DNS may send it to any workload.
		for i := range in.Workloads {
			serving = append(serving, i)
		}
	}

	plan := &Plan{}
	for _, i := range serving {
		wr, refusal := p.planWorkload(i)
		if refusal != nil {
			return nil, refusal
		}
		plan.Workloads = append(plan.Workloads, wr)
	}
	if len(plan.Workloads) == 1 {
		// planWorkload checked this very plan: one workload, one
		// VirtualService.
		return plan, nil
	}
	// All workloads together: one VirtualService when that changes nothing
	// else, else one per binding.
	if why := p.evaluate(plan, plan.Workloads); why == nil {
		return plan, nil
	}
	plan.Split = true
	if why := p.evaluate(plan, plan.Workloads); why != nil {
		why.Attempt = plan
		return nil, why
	}
	return plan, nil
}

// CredentialState says whether a certificate Secret can serve a handshake.
type CredentialState struct {
	// Usable is true when the Secret holds a certificate and key, or when
	// it cannot be told (then the user's server is trusted to work).
	Usable bool
	// Missing is true when the Secret does not exist.
	Missing bool
	// Problem says why it cannot serve, for messages.
	Problem string
}

type planner struct {
	in   PlanInput
	host string
	path string
	// users are the models of the users' objects alone, per workload.
	users []*istiomodel.Proxy
	// vsIndex indexes the users' VirtualServices for each workload; the
	// models with our objects add ours to it.
	vsIndex []*istiomodel.Index
	creds   map[string]CredentialState
}

// serves reports whether the workload's Gateways serve the host at all
// where the CA's requests arrive: a port-80 server or an HTTPS server on
// the port behind 443 whose hosts cover it. DNS then points the host there.
func (p *planner) serves(i int, w *GatewayWorkload) bool {
	m := p.users[i]
	for _, port := range w.HTTPPorts {
		for _, s := range m.HTTP(port).Servers() {
			if coversHost(s.Hosts(), p.host) {
				return true
			}
		}
	}
	for _, port := range w.HTTPSPorts {
		for _, c := range m.Chains(port) {
			if coversHost(c.Hosts(), p.host) {
				return true
			}
		}
	}
	return false
}

// coversHost reports whether one of the (sanitized) server hosts covers the
// host, whatever namespace it admits.
func coversHost(hosts []string, host string) bool {
	for _, h := range hosts {
		h = istiomodel.ServerHostName(h)
		if istiomodel.HostWithin(host, strings.ToLower(h)) {
			return true
		}
	}
	return false
}

// planWorkload returns the first candidate for workload i that routes the
// CA's request to the token and moves nothing else.
func (p *planner) planWorkload(i int) (WorkloadRoute, *Refusal) {
	httpOpts, noHTTP := p.httpOptions(i)
	if len(httpOpts) == 0 {
		return WorkloadRoute{}, noHTTP
	}
	var candidates []WorkloadRoute
	candidates = append(candidates, httpOpts...)
	httpsOpts, noHTTPS := p.httpsOptions(i)
	for _, h := range httpOpts {
		for _, s := range httpsOpts {
			c := h
			c.Bindings = append(slices.Clone(h.Bindings), s.Bindings...)
			c.OwnHTTPS = s.OwnHTTPS
			candidates = append(candidates, c)
		}
	}
	var first, firstCA *Refusal
	for _, c := range candidates {
		if why := p.ownGatewayOutOfScope(i, c); why != nil {
			if firstCA == nil {
				firstCA = why
			}
			continue
		}
		why := p.evaluate(&Plan{}, []WorkloadRoute{c})
		if why != nil && why.Attempt == nil {
			why.Attempt = &Plan{Workloads: []WorkloadRoute{c}}
		}
		if why == nil {
			c.Via = describeVia(c, p.host)
			return c, nil
		}
		switch {
		case why.Reason == metrics.NotPresentedUsersTraffic:
			if first == nil {
				first = why
			}
		case firstCA == nil:
			firstCA = why
			if why.Reason == metrics.NotPresentedHTTPSRedirect && len(httpsOpts) == 0 && noHTTPS != nil {
				firstCA = &Refusal{Reason: noHTTPS.Reason, Message: noHTTPS.Message, Attempt: why.Attempt,
					MissingCredential: noHTTPS.MissingCredential, Situation: noHTTPS.Situation}
			}
		}
	}
	if firstCA != nil {
		return WorkloadRoute{}, firstCA
	}
	return WorkloadRoute{}, first
}

// ownGatewayOutOfScope refuses a candidate that needs a Gateway of our own
// on workload i when istiod gives the pods only the Gateways of their own
// namespace and ours would be written elsewhere: it would bind nothing.
func (p *planner) ownGatewayOutOfScope(i int, c WorkloadRoute) *Refusal {
	w := p.in.Workloads[i]
	ch := p.in.Challenge
	if !c.OwnHTTP && !c.OwnHTTPS || !w.Mesh.ScopeGatewayToNamespace || ch.Spec.Solver.GatewayNamespace == w.Namespace {
		return nil
	}
	return &Refusal{Reason: metrics.NotPresentedGatewayNamespace, Attempt: &Plan{Workloads: []WorkloadRoute{c}}, Message: fmt.Sprintf(
		"http://%s needs a Gateway of the challenge's own on %s, and istiod gives those pods only the Gateways of their namespace %s (PILOT_SCOPE_GATEWAY_TO_NAMESPACE; the controller's --scope-gateway-to-namespace), while %s is %s: set it to %s",
		p.host, w.Describe(), w.Namespace, settingsField(ch, "gatewayNamespace"), ch.Spec.Solver.GatewayNamespace, w.Namespace)}
}

// httpOptions are the ways to put the route where the CA's plain HTTP
// request arrives on workload i.
func (p *planner) httpOptions(i int) ([]WorkloadRoute, *Refusal) {
	w := p.in.Workloads[i]
	m := p.users[i]
	ns := RequesterNamespace(p.in.Challenge)
	var out []WorkloadRoute
	seen := map[Binding]bool{}
	add := func(b Binding) {
		if !seen[b] {
			seen[b] = true
			out = append(out, WorkloadRoute{Index: i, Bindings: []Binding{b}})
		}
	}
	var joined *istiomodel.VirtualHost
	var refused []string
	var refusedBinding *Binding
	for _, port := range w.HTTPPorts {
		rc := m.HTTP(port)
		vh := rc.SelectVirtualHost(p.host)
		if vh == nil {
			continue
		}
		joined = vh
		if vh.RedirectsToHTTPS() {
			// Redirected before any route: nothing to bind on port 80,
			// the route goes where the redirect leads.
			out = append(out, WorkloadRoute{Index: i})
			continue
		}
		for _, s := range rc.Servers() {
			gw := s.Gateway()
			if admits(s.Hosts(), ns, vh.Name()) {
				add(Binding{Gateway: istiomodel.GatewayKey(gw), Host: vh.Name()})
			} else if coversHost(s.Hosts(), vh.Name()) {
				if refusedBinding == nil {
					refusedBinding = &Binding{Gateway: istiomodel.GatewayKey(gw), Host: vh.Name()}
				}
				refused = append(refused, fmt.Sprintf("Gateway %s/%s (hosts %s)", gw.Namespace, gw.Name, strings.Join(s.Spec().Hosts, ", ")))
			}
		}
	}
	if joined == nil {
		for _, port := range w.HTTPPorts {
			for _, s := range m.HTTP(port).Servers() {
				if admits(s.Hosts(), ns, p.host) {
					add(Binding{Gateway: istiomodel.GatewayKey(s.Gateway()), Host: p.host})
				}
			}
		}
		out = append(out, WorkloadRoute{Index: i, OwnHTTP: true})
		return out, nil
	}
	if len(out) == 0 {
		var attempt *Plan
		if refusedBinding != nil {
			attempt = &Plan{Workloads: []WorkloadRoute{{Index: i, Bindings: []Binding{*refusedBinding}}}}
		}
		return nil, &Refusal{Reason: metrics.NotPresentedGatewayNamespace, Attempt: attempt, Message: fmt.Sprintf(
			"http://%s is served on %s by the virtual host %s, which only %s build, and their hosts do not admit VirtualServices of namespace %s, which the request comes from (the challenge route is written there, as that namespace would write it); the Gateway's owner admits it by adding %s/%s to that server's hosts",
			p.host, w.Describe(), joined.Name(), strings.Join(refused, ", "), ns, ns, joined.Name())}
	}
	return out, nil
}

// admits reports whether a server with these (sanitized) hosts lets a
// VirtualService in namespace bind the virtual host name through it.
func admits(hosts []string, namespace, name string) bool {
	for _, h := range istiomodel.HostsForNamespace(hosts, namespace) {
		if istiomodel.HostWithin(name, strings.ToLower(h)) {
			return true
		}
	}
	return false
}

// httpsOptions are the ways to put the route where the CA arrives after a
// redirect to HTTPS on workload i; the refusal explains an empty list.
func (p *planner) httpsOptions(i int) ([]WorkloadRoute, *Refusal) {
	w := p.in.Workloads[i]
	m := p.users[i]
	ns := RequesterNamespace(p.in.Challenge)
	if len(w.HTTPSPorts) == 0 {
		return nil, &Refusal{Reason: metrics.NotPresentedHTTPSRedirect, Message: fmt.Sprintf(
			"http://%s is redirected to HTTPS (tls.httpsRedirect) before any route runs, and no Service in front of %s has a port 443 for the CA to follow the redirect to: expose port 443 on the gateway's Service, or turn httpsRedirect off", p.host, w.Describe())}
	}
	port := w.HTTPSPorts[0]
	chain, ambiguous := m.SelectChain(port, p.host)
	if chain != nil && !ambiguous && chain.Terminates() {
		if problem := p.handshakeProblem(chain, w); problem == "" {
			name := p.host
			if vh := chain.Routes().SelectVirtualHost(p.host); vh != nil {
				name = vh.Name()
			}
			gw := chain.Gateway()
			if !admits(chain.Hosts(), ns, name) {
				return nil, &Refusal{Reason: metrics.NotPresentedGatewayNamespace, Message: fmt.Sprintf(
					"http://%s is redirected to HTTPS, where the server of Gateway %s/%s (hosts %s) serves it, and its hosts do not admit VirtualServices of namespace %s, which the request comes from (the challenge route is written there, as that namespace would write it); the Gateway's owner admits it by adding %s/%s to that server's hosts",
					p.host, gw.Namespace, gw.Name, strings.Join(chain.Spec().Hosts, ", "), ns, ns, name)}
			}
			return []WorkloadRoute{{Index: i, Bindings: []Binding{{Gateway: istiomodel.GatewayKey(gw), Host: name}}}}, nil
		}
	}
	// Nothing answers the host's TLS handshake: a server of our own for
	// exactly the host takes only what fails today.
	why := p.tlsProblem(chain, ambiguous, w)
	if chain != nil && (!chain.Terminates() || ambiguous) {
		return nil, &Refusal{Reason: metrics.NotPresentedHTTPSRedirect, Message: fmt.Sprintf(
			"http://%s is redirected to HTTPS (tls.httpsRedirect), and %s; the CA would follow the redirect and fail: turn httpsRedirect off for the host until the certificate is issued", p.host, why)}
	}
	if chain != nil && !p.servesNobody(chain, w) {
		// Clients with a certificate use that server: a temporary server
		// for the host would take it from them while the challenge is open.
		return nil, &Refusal{Reason: metrics.NotPresentedHTTPSRedirect, Message: fmt.Sprintf(
			"http://%s is redirected to HTTPS (tls.httpsRedirect), and %s; a temporary HTTPS server for the host would take it from the clients that present one: turn httpsRedirect off for the host until the certificate is issued, or issue it with DNS-01", p.host, why)}
	}
	if t := p.in.Challenge.Spec.Solver.TemporaryHTTPSServer; t != nil && !*t {
		return nil, &Refusal{Reason: metrics.NotPresentedHTTPSRedirect, Message: fmt.Sprintf(
			"http://%s is redirected to HTTPS (tls.httpsRedirect) before any route runs, and %s, so the CA would follow the redirect and fail; remove %s: false to let the challenge publish a temporary HTTPS server for the host, add an HTTPS server for %s with a certificate (any: the CA does not verify it), or turn httpsRedirect off", p.host, why, settingsField(p.in.Challenge, "temporaryHTTPSServer"), p.host)}
	}
	if dup := duplicateTLSHost(m.Chains(port), p.host); dup != nil {
		situation := fmt.Sprintf("http://%s is redirected to HTTPS (tls.httpsRedirect) before any route runs, and %s", p.host, why)
		msg := fmt.Sprintf("%s; a temporary HTTPS server cannot take over, since the server of Gateway %s/%s already claims exactly %s there",
			situation, dup.Gateway().Namespace, dup.Gateway().Name, p.host)
		refusal := &Refusal{Reason: metrics.NotPresentedHTTPSRedirect, Situation: situation}
		if dup == chain {
			refusal.MissingCredential = p.missingCredential(chain, w)
			msg += ". When that Secret is the one this certificate fills, annotate the Certificate with cert-manager.io/issue-temporary-certificate: \"true\" (cert-manager then stores a temporary certificate there first, so the server can answer the CA), or turn httpsRedirect off until the first certificate is issued"
		}
		refusal.Message = msg
		return nil, refusal
	}
	return []WorkloadRoute{{Index: i, OwnHTTPS: true}}, nil
}

// duplicateTLSHost returns the TLS server on the port that lists exactly
// host, whatever namespace the entry names: istiod would drop a newer
// server for the same host, and two servers whose entries differ only in
// their namespace part would give Envoy two filter chains for one SNI.
func duplicateTLSHost(chains []*istiomodel.Chain, host string) *istiomodel.Chain {
	for _, c := range chains {
		for _, h := range c.Hosts() {
			h = istiomodel.ServerHostName(h)
			if strings.EqualFold(h, host) {
				return c
			}
		}
	}
	return nil
}

// tlsProblem says why the host's TLS handshake fails on the workload.
func (p *planner) tlsProblem(chain *istiomodel.Chain, ambiguous bool, w *GatewayWorkload) string {
	switch {
	case chain == nil:
		return fmt.Sprintf("no HTTPS server of %s serves %s", w.Describe(), p.host)
	case ambiguous:
		return fmt.Sprintf("several HTTPS servers of %s claim %s equally (Envoy rejects such a listener)", w.Describe(), p.host)
	case !chain.Terminates():
		return fmt.Sprintf("the server of Gateway %s/%s for %s passes TLS through instead of terminating it", chain.Gateway().Namespace, chain.Gateway().Name, p.host)
	}
	return p.handshakeProblem(chain, w)
}

// handshakeProblem says why a terminating HTTPS server cannot complete the
// CA's TLS handshake, or is empty.
func (p *planner) handshakeProblem(chain *istiomodel.Chain, w *GatewayWorkload) string {
	if problem := p.credentialProblem(chain, w); problem != "" {
		return problem
	}
	if mode := chain.Spec().GetTls().GetMode(); requiresClientCertificate(mode) {
		return fmt.Sprintf("the HTTPS server of Gateway %s/%s for %s requires a client certificate (tls.mode %s), which the CA does not present", chain.Gateway().Namespace, chain.Gateway().Name, p.host, mode)
	}
	return ""
}

func requiresClientCertificate(mode istioapi.ServerTLSSettings_TLSmode) bool {
	return mode == istioapi.ServerTLSSettings_MUTUAL || mode == istioapi.ServerTLSSettings_ISTIO_MUTUAL
}

// credentialProblem says why a terminating HTTPS server has no certificate
// to serve anyone (its credential Secret is missing or unusable), or is
// empty.
func (p *planner) credentialProblem(chain *istiomodel.Chain, w *GatewayWorkload) string {
	ref, st, checked := p.credential(chain, w)
	if !checked || st.Usable {
		return ""
	}
	return fmt.Sprintf("the HTTPS server of Gateway %s/%s for %s cannot complete a TLS handshake: %s (Istio serves credentialName %q from Secret %s/%s, in the gateway pods' namespace)", chain.Gateway().Namespace, chain.Gateway().Name, p.host, st.Problem, ref.Raw, ref.Namespace, ref.Name)
}

// credential is the Secret a TLS server's certificate comes from and its
// state, read once per plan; checked is false where there is no Secret to
// check (the mesh certificate, files, our own servers).
func (p *planner) credential(chain *istiomodel.Chain, w *GatewayWorkload) (credentialSecret, CredentialState, bool) {
	tls := chain.Spec().GetTls()
	if tls.GetMode() == istioapi.ServerTLSSettings_ISTIO_MUTUAL {
		return credentialSecret{}, CredentialState{}, false // the workload's own mesh certificate
	}
	ref, ok := credentialRef(tls, w.Namespace)
	if !ok || isOurs(chain.Gateway().Labels) {
		return credentialSecret{}, CredentialState{}, false // ours: its Secret is created with it
	}
	key := ref.Namespace + "/" + ref.Name
	st, seen := p.creds[key]
	if !seen {
		st = CredentialState{Usable: true}
		if p.in.Credential != nil {
			st = p.in.Credential(ref.Namespace, ref.Name)
		}
		p.creds[key] = st
	}
	return ref, st, true
}

// missingCredential returns the credential Secret of a terminating server
// that asks no client certificate when all that keeps it from a handshake
// is that the Secret does not exist, or nil.
func (p *planner) missingCredential(chain *istiomodel.Chain, w *GatewayWorkload) *SecretRef {
	if !chain.Terminates() || requiresClientCertificate(chain.Spec().GetTls().GetMode()) {
		return nil
	}
	ref, st, checked := p.credential(chain, w)
	if !checked || ref.Name == "" || !st.Missing {
		return nil
	}
	return &SecretRef{Namespace: ref.Namespace, Name: ref.Name}
}

// servesNobody reports whether a TLS server answers no client at all: it
// terminates TLS without a usable certificate. Taking its server names, or
// adding routes behind it, moves no one's request.
func (p *planner) servesNobody(chain *istiomodel.Chain, w *GatewayWorkload) bool {
	return chain.Terminates() && p.credentialProblem(chain, w) != ""
}

// withChallenge models workload i with the plan's objects added to the
// users'.
func (p *planner) withChallenge(plan *Plan, routes []WorkloadRoute, i int) *istiomodel.Proxy {
	objs := BuildRoutes(p.in.Challenge, routes, plan.Split, nil)
	gws := append(slices.Clone(p.in.Gateways), p.stamp(objs.Gateways)...)
	vss := p.vsIndex[i].With(p.stampVS(objs.VirtualServices))
	return istiomodel.Build(istiomodel.Input{Gateways: gws, VirtualServices: vss, Workload: &p.in.Workloads[i].Workload})
}

// stamp gives our objects the creation time they will get.
func (p *planner) stamp(gws []*istionet.Gateway) []*istionet.Gateway {
	for _, g := range gws {
		g.CreationTimestamp = metav1.NewTime(p.in.Now)
	}
	return gws
}

func (p *planner) stampVS(vss []*istionet.VirtualService) []*istionet.VirtualService {
	for _, v := range vss {
		v.CreationTimestamp = metav1.NewTime(p.in.Now)
	}
	return vss
}

// evaluate checks the objects of routes on the model of every workload:
// no request but the CA's may change where it goes, and on each routed
// workload the CA's request must reach the token.
func (p *planner) evaluate(plan *Plan, routes []WorkloadRoute) *Refusal {
	withChallenge := make([]*istiomodel.Proxy, len(p.in.Workloads))
	for i, w := range p.in.Workloads {
		withChallenge[i] = p.withChallenge(plan, routes, i)
		cmp := istiomodel.Comparison{
			Host:         p.host,
			Workload:     w.Describe(),
			Ours:         isOurs,
			ServesNobody: func(c *istiomodel.Chain) bool { return p.servesNobody(c, w) },
		}
		if err := istiomodel.UnchangedForUsers(p.users[i], withChallenge[i], cmp); err != nil {
			return &Refusal{Reason: metrics.NotPresentedUsersTraffic, Message: err.Error() +
				"; the challenge is not published rather than move a request of yours: serve the host through a Gateway whose virtual host for it the challenge route can join, or report this layout"}
		}
	}
	for _, r := range routes {
		if ok, why := p.caReaches(withChallenge[r.Index], p.in.Workloads[r.Index]); !ok {
			return why
		}
	}
	return nil
}

func joinPorts(ports []uint32) string {
	var parts []string
	for _, p := range ports {
		parts = append(parts, fmt.Sprint(p))
	}
	return strings.Join(parts, ", ")
}

// caReaches follows the CA's request through the model of a workload.
func (p *planner) caReaches(m *istiomodel.Proxy, w *GatewayWorkload) (bool, *Refusal) {
	for _, port := range w.HTTPPorts {
		vh := m.HTTP(port).SelectVirtualHost(p.host)
		if vh == nil {
			msg := fmt.Sprintf("no virtual host of %s serves http://%s", w.Describe(), p.host)
			if bound := w.ListenPorts(httpPort); !slices.Contains(bound, port) {
				// Several Services map port 80 to different pod ports, and
				// istiod binds servers to the first one's only.
				msg += fmt.Sprintf(" on pod port %d, where the CA arrives through a Service's port 80: istiod binds Gateway servers for port 80 to pod port %s only, the target port of the first Service with port 80 in front of these pods (oldest, then by name); give the Services the same target port for port 80", port, joinPorts(bound))
			}
			return false, &Refusal{Reason: metrics.NotPresentedGatewayDiscovery, Message: msg}
		}
		if vh.RedirectsToHTTPS() {
			if ok, why := p.caReachesTLS(m, w); !ok {
				return false, why
			}
			continue
		}
		if ok, why := p.routeReaches(vh, "http", "port 80 of "+w.Describe()); !ok {
			return false, why
		}
	}
	return true, nil
}

func (p *planner) caReachesTLS(m *istiomodel.Proxy, w *GatewayWorkload) (bool, *Refusal) {
	redirected := fmt.Sprintf("http://%s is redirected to HTTPS (tls.httpsRedirect) before any route runs", p.host)
	if len(w.HTTPSPorts) == 0 {
		_, why := p.httpsOptions(slices.Index(p.in.Workloads, w))
		return false, why
	}
	for _, port := range w.HTTPSPorts {
		chain, ambiguous := m.SelectChain(port, p.host)
		if chain == nil || ambiguous || !chain.Terminates() {
			return false, &Refusal{Reason: metrics.NotPresentedHTTPSRedirect, Message: redirected + ", and " + p.tlsProblem(chain, ambiguous, w)}
		}
		if problem := p.handshakeProblem(chain, w); problem != "" {
			return false, &Refusal{Reason: metrics.NotPresentedHTTPSRedirect, Message: redirected + ", and " + problem}
		}
		gw := chain.Gateway()
		vh := chain.Routes().SelectVirtualHost(p.host)
		if vh == nil {
			return false, &Refusal{Reason: metrics.NotPresentedHTTPSRedirect, Message: fmt.Sprintf("%s, and no virtual host of the HTTPS server of Gateway %s/%s serves it", redirected, gw.Namespace, gw.Name)}
		}
		if ok, why := p.routeReaches(vh, "https", fmt.Sprintf("the HTTPS server of Gateway %s/%s", gw.Namespace, gw.Name)); !ok {
			return false, why
		}
	}
	return true, nil
}

// routeReaches walks the virtual host's routes in Envoy's order: the first
// that catches the CA's request must be the challenge route.
func (p *planner) routeReaches(vh *istiomodel.VirtualHost, scheme, where string) (bool, *Refusal) {
	req := istiomodel.CARequest{Host: p.host, Path: p.path, Scheme: scheme}
	for _, r := range vh.Routes() {
		if !r.MatchesCA(req) {
			continue
		}
		vs := r.VirtualService()
		if isOurs(vs.Labels) {
			return true, nil
		}
		return false, &Refusal{Reason: metrics.NotPresentedShadowed, Message: fmt.Sprintf(
			"route %s of VirtualService %s/%s (%s) matches %s://%s%s and Istio tries it before the challenge route in the virtual host %s on %s, so the CA would not reach the token; exclude /.well-known/acme-challenge/ from that route (or give it a more specific match)",
			r.Name(), vs.Namespace, vs.Name, describeMatch(r.Match()), scheme, p.host, p.path, vh.Name(), where)}
	}
	return false, &Refusal{Reason: metrics.NotPresentedGatewayDiscovery, Message: fmt.Sprintf("no route of the virtual host %s on %s matches %s://%s%s", vh.Name(), where, scheme, p.host, p.path)}
}

// isOurs tells the challenge objects (our Gateways and VirtualServices)
// from users' ones by their labels.
func isOurs(labels map[string]string) bool {
	return labels[LabelManagedBy] == ManagedByValue
}

// describeMatch says what a route matches, for messages.
func describeMatch(m *istioapi.HTTPMatchRequest) string {
	if m == nil {
		return "no match: every request"
	}
	var parts []string
	switch uri := m.GetUri(); {
	case uri.GetExact() != "":
		parts = append(parts, "exact "+uri.GetExact())
	case uri.GetPrefix() != "":
		parts = append(parts, "prefix "+uri.GetPrefix())
	case uri.GetRegex() != "":
		parts = append(parts, "regex "+uri.GetRegex())
	}
	if len(m.GetHeaders()) > 0 || len(m.GetWithoutHeaders()) > 0 {
		parts = append(parts, "header conditions the CA's request may meet")
	}
	if m.GetMethod() != nil || m.GetAuthority() != nil || m.GetScheme() != nil {
		parts = append(parts, "method, authority or scheme conditions the CA's request meets")
	}
	if len(parts) == 0 {
		return "a match without a path condition"
	}
	return strings.Join(parts, ", ")
}

// describeVia tells how the CA's request reaches the token on a workload.
func describeVia(r WorkloadRoute, host string) string {
	var parts []string
	for _, b := range r.Bindings {
		parts = append(parts, fmt.Sprintf("the virtual host %s of Gateway %s", b.Host, b.Gateway))
	}
	if r.OwnHTTP {
		parts = append(parts, "a port-80 server for "+host+" in a Gateway of its own")
	}
	if r.OwnHTTPS {
		parts = append(parts, "a temporary HTTPS server for "+host+" in a Gateway of its own")
	}
	return strings.Join(parts, " and ")
}
