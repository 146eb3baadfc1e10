// Package istiomodel models what istiod (checked against Istio 1.31's own
// translation) builds for one ingress gateway workload from Gateways and
// VirtualServices: the listeners the CA's requests reach, and on them the
// virtual hosts and the order of their routes, and which of them Envoy
// picks for a request. It is pure: objects in, model out, read through
// methods. Its files follow istiod's phases, each named after the code it
// follows:
//
//   - gateway.go (pilot/pkg/model/gateway.go, MergeGateways): Gateways
//     apply to the workload when their selector is a subset of a pod's
//     labels (an empty selector applies everywhere); they are merged in
//     order of creation time, then name, then namespace. A server binds to
//     the pod port behind a gateway Service port of the same number, or to
//     its own number (Workload.ListenPorts). All plain HTTP servers on one
//     pod port share one route configuration; a server whose protocol
//     cannot merge with the first server on its port is dropped, and so is
//     a server with TLS settings (HTTPS, or HTTP with httpsRedirect) whose
//     host strings repeat one already bound on that port. Each HTTPS server
//     has a route configuration of its own.
//   - hosts.go (pilot/pkg/model/gateway.go's host sanitizing and
//     pkg/config/host): "./h" is the Gateway's namespace, "*/h" is "h",
//     "ns/h" admits only VirtualServices from ns; short VirtualService
//     hosts become name.ns.svc.cluster.local.
//   - virtualservices.go (pilot/pkg/model/push_context.go, the gateway
//     index of VirtualServices): a VirtualService without hosts is a
//     delegate and is never bound itself; gateway references are
//     "ns/name", "name" (own namespace) or the legacy
//     "name.ns.svc.cluster.local"; exportTo decides which gateway pods see
//     it (listed in this order: exported only to its own namespace,
//     exported to the pods' namespace, exported everywhere; each by
//     creation time).
//   - delegate.go (pilot/pkg/model/virtualservice.go, mergeHTTPRoute):
//     delegates are expanded into their root as istiod merges them.
//   - routeconfig.go (pilot/pkg/networking/core/gateway.go,
//     buildGatewayHTTPRouteConfig): for each server in merge order and
//     each VirtualService bound to its Gateway, every host in the
//     intersection of server hosts and VirtualService hosts (the narrower
//     of each pair) names a virtual host; the VirtualService's routes are
//     appended to it. A server with httpsRedirect marks every virtual host
//     reached through it, and the virtual host of each of its own host
//     strings, as TLS-only. In each virtual host, catch-all routes (prefix
//     "/" or regex ".*" without header or query conditions) are moved
//     last, keeping their order.
//   - route.go (pilot/pkg/networking/core/route/route.go,
//     BuildHTTPRoutesForVirtualService): routes are translated per match; a
//     match that names other gateways, another port, other source labels
//     or namespace is dropped; a VirtualService stops at its first
//     catch-all route and is skipped entirely when no route is left.
//   - l4.go (pilot/pkg/networking/core/gateway.go's TLS and TCP filter
//     chains): a TLS server that does not end in HTTP routes exists only
//     through VirtualService routes: a PASSTHROUGH server has a filter
//     chain for the sniHosts of each matching tls route, a TLS-protocol
//     server that terminates TLS one for its hosts when a tcp route
//     matches, and without such routes nothing; its server names then fall
//     to the other servers.
//   - select.go (Envoy): the virtual host is picked by the request's host:
//     an exact domain, then the longest "*.suffix", then "*". An HTTPS
//     listener picks the server by SNI: exact host, then the longest
//     wildcard, then a server for "*".
//   - match.go (Envoy's route matching): whether a route catches the CA's
//     validation request.
//   - compare.go: whether two models route every request but one host's
//     token path alike.
//   - cache.go: models kept between plans while the objects are the same.
package istiomodel
