// Package istiotest builds the Istio objects the route model's and the
// planner's table tests are written in.
package istiotest

import (
	"strconv"
	"strings"
	"time"

	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IngressLabels select Istio's default ingress gateway.
var IngressLabels = map[string]string{"istio": "ingressgateway"}

// Epoch is the creation time of the objects built here; a VirtualService's
// age counts seconds from it.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Gateway builds a Gateway created at Epoch.
func Gateway(ns, name string, selector map[string]string, servers ...*istioapi.Server) *istionet.Gateway {
	gw := &istionet.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(Epoch)}}
	gw.Spec.Selector = selector
	gw.Spec.Servers = servers
	return gw
}

// Server builds a Gateway server; its port is named after the protocol and
// number.
func Server(port uint32, protocol string, tls *istioapi.ServerTLSSettings, hosts ...string) *istioapi.Server {
	return &istioapi.Server{Port: &istioapi.Port{Number: port, Name: strings.ToLower(protocol) + "-" + strconv.Itoa(int(port)), Protocol: protocol}, Hosts: hosts, Tls: tls}
}

// VirtualService builds a VirtualService created age seconds after Epoch.
func VirtualService(ns, name string, age int, gateways, hosts []string, routes ...*istioapi.HTTPRoute) *istionet.VirtualService {
	vs := &istionet.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(Epoch.Add(time.Duration(age) * time.Second))}}
	vs.Spec.Gateways, vs.Spec.Hosts, vs.Spec.Http = gateways, hosts, routes
	return vs
}

// Route builds an HTTP route to the Service "app".
func Route(name string, matches ...*istioapi.HTTPMatchRequest) *istioapi.HTTPRoute {
	return &istioapi.HTTPRoute{Name: name, Match: matches, Route: []*istioapi.HTTPRouteDestination{{Destination: &istioapi.Destination{Host: "app"}}}}
}

// TLSPassthrough gives a VirtualService a tls route for the server names.
func TLSPassthrough(vs *istionet.VirtualService, sniHosts ...string) *istionet.VirtualService {
	vs.Spec.Tls = []*istioapi.TLSRoute{{
		Match: []*istioapi.TLSMatchAttributes{{SniHosts: sniHosts}},
		Route: []*istioapi.RouteDestination{{Destination: &istioapi.Destination{Host: "backend"}}},
	}}
	return vs
}

// Prefix is a match on a path prefix.
func Prefix(p string) *istioapi.HTTPMatchRequest {
	return &istioapi.HTTPMatchRequest{Uri: &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Prefix{Prefix: p}}}
}
