package solver

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// unchangedForUsers reports, as an error naming the first difference,
// whether adding the challenge objects (after) changes how the workload
// routes any request but the CA's for host: which virtual host a request
// lands in, whether it is redirected to HTTPS, which users' routes it tries
// in which order, and which TLS server answers a server name. The challenge
// route itself only catches the token path for host (its authority
// condition), so it is left out of the comparison.
//
// Requests are probed per host name: every name a virtual host, server or
// server name of either model carries (a wildcard by a name under it), and
// host. Envoy's choice between virtual hosts only changes at those names.
//
// servesNobody tells the TLS servers that complete no handshake (no usable
// certificate): nothing behind them can change for anyone, and our
// temporary server may take the challenged host from them.
func unchangedForUsers(before, after *proxyModel, host string, w *GatewayWorkload, servesNobody func(*tlsChain) bool) error {
	probes := probeHosts(before, after, host)
	for _, port := range sortedKeys(before.http, after.http) {
		b, a := before.http[port], after.http[port]
		for _, h := range probes {
			vb, va := b.selectVhost(h), a.selectVhost(h)
			if !sameBehaviour(vb, va, false) {
				return fmt.Errorf("the challenge route would change how %s answers plain HTTP requests for %s (%s instead of %s)", w.Describe(), h, describeVhost(va), describeVhost(vb))
			}
		}
	}
	for _, port := range sortedKeys(before.tls, after.tls) {
		b, a := newChainIndex(before.tls[port]), newChainIndex(after.tls[port])
		for _, h := range probes {
			cb, ambB := b.selectChain(h)
			ca, ambA := a.selectChain(h)
			switch {
			case ambB != ambA:
				return fmt.Errorf("the challenge objects would make the HTTPS servers of %s for %s ambiguous", w.Describe(), h)
			case cb == nil && ca == nil:
				continue
			case cb == nil || ca == nil || cb.server != ca.server:
				if h == host && ca != nil && isOurGateway(ca) && (cb == nil || servesNobody(cb)) {
					// Our temporary server for exactly the host, where no
					// server of the users' can complete a handshake for it.
					continue
				}
				return fmt.Errorf("the challenge objects would change which HTTPS server of %s answers %s", w.Describe(), h)
			}
			// The credential is looked at last: it costs a read of the
			// Secret, and most probed names behave the same anyway.
			if cb.terminates && !sameBehaviour(cb.routes.selectVhost(h), ca.routes.selectVhost(h), true) && !servesNobody(cb) {
				return fmt.Errorf("the challenge route would change how the HTTPS server of Gateway %s/%s answers %s", cb.gateway.Namespace, cb.gateway.Name, h)
			}
		}
	}
	return nil
}

func isOurGateway(c *tlsChain) bool {
	return c.gateway.Labels[LabelManagedBy] == ManagedByValue
}

// sameBehaviour compares what two virtual hosts do with users' requests:
// the redirect to HTTPS (plain HTTP only; it redirects every path), else
// the users' routes in order. No virtual host answers 404, like one with no
// route.
func sameBehaviour(b, a *vhost, tls bool) bool {
	rb, ra := b != nil && b.requireTLS, a != nil && a.requireTLS
	if !tls {
		if rb != ra {
			return false
		}
		if rb {
			return true
		}
	}
	ub, ua := userRoutes(b), userRoutes(a)
	for {
		r, okB := ub()
		s, okA := ua()
		if okB != okA {
			return false
		}
		if !okB {
			return true
		}
		if r.key != s.key {
			return false
		}
	}
}

// userRoutes iterates the routes of v that are not challenge routes.
func userRoutes(v *vhost) func() (*modelRoute, bool) {
	i := 0
	return func() (*modelRoute, bool) {
		for v != nil && i < len(v.routes) {
			r := v.routes[i]
			i++
			if !isChallengeRoute(r) {
				return r, true
			}
		}
		return nil, false
	}
}

func describeVhost(v *vhost) string {
	switch {
	case v == nil:
		return "no virtual host"
	case v.requireTLS:
		return "the redirecting virtual host " + v.name
	}
	return "the virtual host " + v.name
}

// probeHosts lists a request host for every name the models know.
func probeHosts(before, after *proxyModel, host string) []string {
	set := map[string]bool{host: true}
	addName := func(n string) {
		n = strings.ToLower(n)
		n = serverHostName(n)
		switch {
		case n == "*":
			set["probe.invalid"] = true
		case strings.HasPrefix(n, "*."):
			set["probe"+n[1:]] = true
		case n != "":
			set[n] = true
		}
	}
	for _, m := range []*proxyModel{before, after} {
		for _, rc := range m.http {
			for name := range rc.vhosts {
				addName(name)
			}
			for _, s := range rc.servers {
				for _, h := range s.hosts {
					addName(h)
				}
			}
		}
		for _, chains := range m.tls {
			for _, c := range chains {
				for _, h := range c.server.Hosts {
					addName(h)
				}
				if c.routes != nil {
					for name := range c.routes.vhosts {
						addName(name)
					}
				}
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

func sortedKeys[V any](a, b map[uint32]V) []uint32 {
	set := map[uint32]bool{}
	for k := range a {
		set[k] = true
	}
	for k := range b {
		set[k] = true
	}
	return slices.Sorted(maps.Keys(set))
}
