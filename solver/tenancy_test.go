package solver

import (
	"strings"
	"testing"

	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/istio-acme/istio-acme-issuer/internal/istiomodel"
)

// The rule over every form a Gateway server's hosts entry takes (istio/api
// Server.hosts): "ns/host", "./host", "*/host", a bare host, wildcards, and
// names the entry does not cover.
func TestServerAdmits(t *testing.T) {
	tests := []struct {
		name            string
		hosts           []string
		gatewayNS       string
		namespace, host string
		lists, admits   bool
	}{
		{name: "bare host admits every namespace", hosts: []string{"shop.example.com"}, gatewayNS: "istio-system", namespace: "team-a", host: "shop.example.com", lists: true, admits: true},
		{name: "*/host admits every namespace", hosts: []string{"*/shop.example.com"}, gatewayNS: "istio-system", namespace: "team-a", host: "shop.example.com", lists: true, admits: true},
		{name: "ns/host admits that namespace", hosts: []string{"team-b/shop.example.com"}, gatewayNS: "istio-system", namespace: "team-b", host: "shop.example.com", lists: true, admits: true},
		{name: "ns/host refuses another namespace", hosts: []string{"team-b/shop.example.com"}, gatewayNS: "istio-system", namespace: "team-a", host: "shop.example.com", lists: true},
		{name: "./host admits the Gateway's namespace", hosts: []string{"./shop.example.com"}, gatewayNS: "team-b", namespace: "team-b", host: "shop.example.com", lists: true, admits: true},
		{name: "./host refuses other namespaces", hosts: []string{"./shop.example.com"}, gatewayNS: "team-b", namespace: "team-a", host: "shop.example.com", lists: true},
		{name: "./host refuses the gateway pods' namespace", hosts: []string{"./shop.example.com"}, gatewayNS: "team-b", namespace: "istio-system", host: "shop.example.com", lists: true},
		{name: "a wildcard lists the names below it", hosts: []string{"team-b/*.example.com"}, gatewayNS: "istio-system", namespace: "team-a", host: "shop.example.com", lists: true},
		{name: "a wildcard does not list the zone's apex", hosts: []string{"team-b/*.example.com"}, gatewayNS: "istio-system", namespace: "team-a", host: "example.com"},
		{name: "* admits everything", hosts: []string{"*"}, gatewayNS: "istio-system", namespace: "team-a", host: "shop.example.com", lists: true, admits: true},
		{name: "*/* admits everything", hosts: []string{"*/*"}, gatewayNS: "istio-system", namespace: "team-a", host: "shop.example.com", lists: true, admits: true},
		{name: "ns/* lists everything for one namespace", hosts: []string{"team-b/*"}, gatewayNS: "istio-system", namespace: "team-a", host: "shop.example.com", lists: true},
		{name: "another host does not list the name", hosts: []string{"team-b/other.example.com"}, gatewayNS: "istio-system", namespace: "team-a", host: "shop.example.com"},
		{name: "a suffix without a label boundary does not list", hosts: []string{"team-b/*.example.com"}, gatewayNS: "istio-system", namespace: "team-a", host: "shopexample.com"},
		{name: "one admitting entry among restricting ones", hosts: []string{"team-b/shop.example.com", "*/*.example.com"}, gatewayNS: "istio-system", namespace: "team-a", host: "shop.example.com", lists: true, admits: true},
		{name: "entries are compared in lower case", hosts: []string{"team-b/SHOP.example.com"}, gatewayNS: "istio-system", namespace: "team-b", host: "shop.example.com", lists: true, admits: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lists, admits := serverAdmits(tt.hosts, tt.gatewayNS, tt.namespace, tt.host)
			if lists != tt.lists || admits != tt.admits {
				t.Errorf("serverAdmits(%v in %s, %s, %s) = lists %v, admits %v; want %v, %v", tt.hosts, tt.gatewayNS, tt.namespace, tt.host, lists, admits, tt.lists, tt.admits)
			}
		})
	}
}

func tenancyGateway(namespace, name string, selector map[string]string, servers ...*istioapi.Server) *istionet.Gateway {
	gw := &istionet.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	gw.Spec.Selector = selector
	gw.Spec.Servers = servers
	return gw
}

func tenancyServer(port uint32, protocol string, hosts ...string) *istioapi.Server {
	return &istioapi.Server{Port: &istioapi.Port{Number: port, Protocol: protocol, Name: strings.ToLower(protocol)}, Hosts: hosts}
}

// The rule over a workload's Gateways: every server that lists the name,
// on any port, must admit the namespace, and one must list it; Gateways of
// other workloads do not count.
func TestIstioAdmits(t *testing.T) {
	ingress := map[string]string{"istio": "ingressgateway"}
	w := &GatewayWorkload{Workload: istiomodel.Workload{PodLabels: []map[string]string{{"istio": "ingressgateway", "app": "istio-ingressgateway"}}}}
	shared := tenancyGateway("istio-system", "public", ingress, tenancyServer(80, "HTTP", "*.example.com"))
	teamB443 := tenancyGateway("team-b", "secure", ingress, tenancyServer(443, "HTTPS", "./secure.b.example.com"))
	platformB := tenancyGateway("istio-system", "b", ingress, tenancyServer(80, "HTTP", "team-b/shop.b.example.com"))
	otherWorkload := tenancyGateway("team-c", "edge", map[string]string{"istio": "edge"}, tenancyServer(80, "HTTP", "./shop.example.com"))
	tests := []struct {
		name            string
		gateways        []*istionet.Gateway
		namespace, host string
		listed          bool
		refusedBy       string
	}{
		{name: "shared wildcard Gateway admits every team", gateways: []*istionet.Gateway{shared}, namespace: "team-a", host: "shop.example.com", listed: true},
		{name: "a name no server lists", gateways: []*istionet.Gateway{shared}, namespace: "team-a", host: "new.example.org"},
		{name: "a team's 443-only ./host refuses another team", gateways: []*istionet.Gateway{teamB443}, namespace: "team-a", host: "secure.b.example.com", listed: true, refusedBy: "team-b/secure"},
		{name: "a team's 443-only ./host admits the team", gateways: []*istionet.Gateway{teamB443}, namespace: "team-b", host: "secure.b.example.com", listed: true},
		{name: "team-b/host on the platform's Gateway admits team-b", gateways: []*istionet.Gateway{platformB}, namespace: "team-b", host: "shop.b.example.com", listed: true},
		{name: "team-b/host on the platform's Gateway refuses team-a", gateways: []*istionet.Gateway{platformB}, namespace: "team-a", host: "shop.b.example.com", listed: true, refusedBy: "istio-system/b"},
		{name: "team-b/host refuses the gateway namespace too", gateways: []*istionet.Gateway{platformB}, namespace: "istio-system", host: "shop.b.example.com", listed: true, refusedBy: "istio-system/b"},
		{name: "one restricting server among admitting ones refuses", gateways: []*istionet.Gateway{tenancyGateway("istio-system", "any", ingress, tenancyServer(80, "HTTP", "*")), teamB443}, namespace: "team-a", host: "secure.b.example.com", listed: true, refusedBy: "team-b/secure"},
		{name: "a Gateway of another workload does not count", gateways: []*istionet.Gateway{shared, otherWorkload}, namespace: "team-a", host: "shop.example.com", listed: true},
		{name: "a Gateway without selector selects every workload", gateways: []*istionet.Gateway{tenancyGateway("team-c", "all", nil, tenancyServer(8443, "TLS", "./shop.example.com")), shared}, namespace: "team-a", host: "shop.example.com", listed: true, refusedBy: "team-c/all"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			listed, refusing := istioAdmits(tt.gateways, []*GatewayWorkload{w}, tt.namespace, tt.host)
			if listed != tt.listed {
				t.Errorf("listed = %v, want %v", listed, tt.listed)
			}
			var got string
			if len(refusing) > 0 {
				got = refusing[0].gateway.Namespace + "/" + refusing[0].gateway.Name
			}
			if got != tt.refusedBy {
				t.Errorf("refused by %q, want %q", got, tt.refusedBy)
			}
			msg := refusal(tt.namespace, tt.host, tt.gateways, []*GatewayWorkload{w})
			if allowed := tt.listed && tt.refusedBy == ""; allowed != (msg == "") {
				t.Errorf("refusal message %q, want allowed = %v", msg, allowed)
			}
			for _, part := range []string{"namespace " + tt.namespace, tt.host, "HostnameGrant", tt.refusedBy} {
				if msg != "" && !strings.Contains(msg, part) {
					t.Errorf("message %q lacks %q", msg, part)
				}
			}
		})
	}
}
