package differential

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/istio-acme/istio-acme-issuer/solver"
)

// checkTenancy checks the tenancy rule's reading of a Gateway's hosts
// against Istio's own translation: for the first plain-HTTP server on the
// first workload whose hosts list the challenged name, a VirtualService of
// the requester's namespace for the name, bound to that Gateway, must reach
// its destination exactly when the rule says one of the Gateway's plain
// HTTP servers on that pod port admits the namespace. A control VirtualService from a
// namespace an entry names tells a server Istio does not bind at all (a
// port conflict) from one that refuses the namespace. It returns whether
// the layout could be checked.
func checkTenancy(t *testing.T, l *layout) (bool, error) {
	requester := l.Challenge.Namespace
	w := l.Workloads[0]
	var gw *istionet.Gateway
	var srv *istioapi.Server
	for _, g := range l.Gateways {
		if !selects(g.Spec.Selector, w.Labels) {
			continue
		}
		for _, s := range g.Spec.Servers {
			if s.GetPort().GetProtocol() != "HTTP" || s.GetTls().GetHttpsRedirect() || s.GetBind() != "" {
				continue
			}
			if lists, _ := solver.ServerAdmits(s.Hosts, g.Namespace, requester, l.Host); lists {
				gw, srv = g, s
				break
			}
		}
		if gw != nil {
			break
		}
	}
	if gw == nil {
		return false, nil
	}
	// Servers of the Gateway on one pod port share its route
	// configuration (port 80 and 8080 both land on 8080 behind Istio's
	// default Service): a VirtualService bound to the Gateway joins
	// through any of them.
	pw := l.workloads()[0]
	podPorts := pw.ListenPorts(srv.GetPort().GetNumber())
	admits := false
	for _, s := range gw.Spec.Servers {
		if s.GetPort().GetProtocol() != "HTTP" || s.GetTls().GetHttpsRedirect() || s.GetBind() != "" ||
			!slices.ContainsFunc(pw.ListenPorts(s.GetPort().GetNumber()), func(p uint32) bool { return slices.Contains(podPorts, p) }) {
			continue
		}
		if _, a := solver.ServerAdmits(s.Hosts, gw.Namespace, requester, l.Host); a {
			admits = true
		}
	}
	control := controlNamespace(srv.Hosts, gw.Namespace, requester, l.Host)

	probe := func(namespace, name string) *istionet.VirtualService {
		vs := &istionet.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, CreationTimestamp: metav1.NewTime(epoch.Add(2 * time.Minute))}}
		vs.Spec.Hosts, vs.Spec.Gateways, vs.Spec.ExportTo = []string{l.Host}, []string{gw.Namespace + "/" + gw.Name}, []string{"*"}
		vs.Spec.Http = []*istioapi.HTTPRoute{{
			Match: []*istioapi.HTTPMatchRequest{{Uri: &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Exact{Exact: "/" + name}}}},
			Route: []*istioapi.HTTPRouteDestination{{Destination: &istioapi.Destination{Host: name + ".probes.svc.cluster.local", Port: &istioapi.PortSelector{Number: 80}}}},
		}}
		return vs
	}
	probes := []*istionet.VirtualService{probe(requester, "tenancy-probe-requester")}
	if control != requester {
		probes = append(probes, probe(control, "tenancy-probe-control"))
	}
	tr, err := translate(t, l, w, &solver.Routes{VirtualServices: probes})
	if err != nil {
		return false, fmt.Errorf("translating with the tenancy probes: %w", err)
	}
	defer tr.Close()
	none := func(string, string) bool { return false }
	reaches := func(name string) (reached, inconclusive bool) {
		for _, port := range podPorts {
			d := decide(t, tr.Sim, int(port), request{host: l.Host, path: "/" + name}, none, w.Namespace)
			switch {
			case d.kind == "cluster" && strings.Contains(d.target, name+".probes"):
				return true, false
			case d.kind == "cluster" || d.kind == "redirect" || d.kind == "direct" || d.kind == "tls-redirect":
				inconclusive = true // an older route of a user's answers first
			}
		}
		return false, inconclusive
	}
	got, unsure := reaches("tenancy-probe-requester")
	switch {
	case got && !admits:
		return true, fmt.Errorf("tenancy: the rule says no server of Gateway %s/%s on port %d (hosts %v) admits namespace %s for %s, but Istio routes a VirtualService of %s bound to it", gw.Namespace, gw.Name, srv.GetPort().GetNumber(), srv.Hosts, requester, l.Host, requester)
	case !got && admits && !unsure:
		if control == requester {
			return false, nil // nothing tells an unbound server from a refusal
		}
		if ctl, _ := reaches("tenancy-probe-control"); !ctl {
			return false, nil // Istio binds nothing of the server's for anyone
		}
		return true, fmt.Errorf("tenancy: the rule says Gateway %s/%s on port %d (hosts %v) admits namespace %s for %s, but Istio does not route a VirtualService of %s bound to it (one of %s is routed)", gw.Namespace, gw.Name, srv.GetPort().GetNumber(), srv.Hosts, requester, l.Host, requester, control)
	case unsure && !got:
		return false, nil
	}
	return true, nil
}

// controlNamespace is a namespace the server's entry for the name admits
// whatever the rule says of the requester: the entry's own namespace, or
// the requester's for an entry that admits every namespace.
func controlNamespace(hosts []string, gatewayNamespace, requester, name string) string {
	for _, h := range hosts {
		ns, host, ok := strings.Cut(h, "/")
		if !ok || ns == "*" {
			if lists, _ := solver.ServerAdmits([]string{h}, gatewayNamespace, requester, name); lists {
				return requester
			}
			continue
		}
		if ns == "." {
			ns = gatewayNamespace
		}
		if lists, _ := solver.ServerAdmits([]string{"*/" + host}, gatewayNamespace, requester, name); lists {
			return ns
		}
	}
	return requester
}

// selects reports whether a Gateway selector matches the pod labels (an
// empty selector matches every gateway workload).
func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}
