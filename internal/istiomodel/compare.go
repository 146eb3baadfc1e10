package istiomodel

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	istioapi "istio.io/api/networking/v1"
)

// Comparison says what UnchangedForUsers compares.
type Comparison struct {
	// Host is the challenged host: its token path is the one request the
	// challenge objects may route.
	Host string
	// Workload names the gateway workload in messages.
	Workload string
	// Ours tells the challenge's objects (Gateways and VirtualServices)
	// from the users' by their labels.
	Ours func(labels map[string]string) bool
	// ServesNobody tells the TLS servers that complete no handshake (no
	// usable certificate): nothing behind them can change for anyone, and
	// our temporary server may take the challenged host from them.
	ServesNobody func(*Chain) bool
}

// UnchangedForUsers reports, as an error naming the first difference,
// whether the model with the challenge objects added (withChallenge)
// routes any request but the CA's for the host differently from the model
// of the users' objects alone (users): which virtual host a request lands
// in, whether it is redirected to HTTPS, which users' routes it tries in
// which order, and which TLS server answers a server name. The challenge
// route itself only catches the token path for the host (its authority
// condition), so it is left out of the comparison.
//
// Requests are probed per host name: every name a virtual host, server or
// server name of either model carries (a wildcard by a name under it), and
// the host. Envoy's choice between virtual hosts only changes at those
// names.
func UnchangedForUsers(users, withChallenge *Proxy, c Comparison) error {
	host := c.Host
	probes := probeHosts(users, withChallenge, host)
	for _, port := range sortedKeys(users.http, withChallenge.http) {
		b, a := users.http[port], withChallenge.http[port]
		for _, h := range probes {
			vb, va := b.SelectVirtualHost(h), a.SelectVirtualHost(h)
			if !c.sameBehaviour(vb, va, false, h) {
				return fmt.Errorf("the challenge route would change how %s answers plain HTTP requests for %s (%s instead of %s)", c.Workload, h, describeVhost(va), describeVhost(vb))
			}
		}
	}
	for _, port := range sortedKeys(users.tls, withChallenge.tls) {
		b, a := newChainIndex(users.tls[port]), newChainIndex(withChallenge.tls[port])
		for _, h := range probes {
			lb, la := b.candidates(h), a.candidates(h)
			var cb, ca *Chain
			if len(lb) > 0 {
				cb = lb[0]
			}
			if len(la) > 0 {
				ca = la[0]
			}
			switch {
			case (len(lb) > 1) != (len(la) > 1):
				return fmt.Errorf("the challenge objects would make the HTTPS servers of %s for %s ambiguous", c.Workload, h)
			case cb == nil && ca == nil:
				continue
			case cb == nil || ca == nil || cb.spec != ca.spec:
				if h == host && ca != nil && len(la) == 1 && c.Ours(ca.gateway.Labels) && (cb == nil || c.ServesNobody(cb)) {
					// Our temporary server for exactly the host, where no
					// server of the users' can complete a handshake for it.
					continue
				}
				return fmt.Errorf("the challenge objects would change which HTTPS server of %s answers %s", c.Workload, h)
			case len(lb) != len(la) || slices.ContainsFunc(lb, func(x *Chain) bool { return sameServer(la, x) == nil }):
				return fmt.Errorf("the challenge objects would change which HTTPS servers of %s take %s alike", c.Workload, h)
			}
			// Servers that take a name alike make Envoy reject the
			// listener and keep serving one it accepted before, which may
			// have had any of them alone: each is compared. The credential
			// is looked at last: it costs a read of the Secret, and most
			// probed names behave the same anyway.
			for _, cb := range lb {
				ca := sameServer(la, cb)
				if cb.terminates && !c.sameBehaviour(cb.routes.SelectVirtualHost(h), ca.routes.SelectVirtualHost(h), true, h) && !c.ServesNobody(cb) {
					if len(lb) > 1 {
						return fmt.Errorf("the challenge route would change how the HTTPS server of Gateway %s/%s answers %s (one of %d HTTPS servers of %s that take %s alike on port %d, a listener Envoy rejects and may serve from an earlier version: give each server its own hosts)", cb.gateway.Namespace, cb.gateway.Name, h, len(lb), c.Workload, h, port)
					}
					return fmt.Errorf("the challenge route would change how the HTTPS server of Gateway %s/%s answers %s", cb.gateway.Namespace, cb.gateway.Name, h)
				}
			}
		}
	}
	return nil
}

// sameServer returns the chain of chains built from the same server as c,
// or nil.
func sameServer(chains []*Chain, c *Chain) *Chain {
	if i := slices.IndexFunc(chains, func(x *Chain) bool { return x.spec == c.spec }); i >= 0 {
		return chains[i]
	}
	return nil
}

// sameBehaviour compares what two virtual hosts do with users' requests
// for host: the redirect to HTTPS (plain HTTP only; it redirects every
// path), else the users' routes in order that such a request can match
// (a route whose authority condition excludes host is never tried for
// it). No virtual host answers 404, like one with no route.
func (c Comparison) sameBehaviour(b, a *VirtualHost, tls bool, host string) bool {
	rb, ra := b != nil && b.requireTLS, a != nil && a.requireTLS
	if !tls {
		if rb != ra {
			return false
		}
		if rb {
			return true
		}
	}
	ub, ua := c.userRoutes(b, host), c.userRoutes(a, host)
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

// userRoutes iterates the routes of v that are not challenge routes and
// that a request for host can match.
func (c Comparison) userRoutes(v *VirtualHost, host string) func() (*Route, bool) {
	i := 0
	return func() (*Route, bool) {
		for v != nil && i < len(v.routes) {
			r := v.routes[i]
			i++
			if !c.Ours(r.vs.Labels) && authorityMayMatch(r.match.GetAuthority(), host) {
				return r, true
			}
		}
		return nil, false
	}
}

// authorityMayMatch reports whether an authority condition can match a
// request for host, whose :authority may carry a port. Only exact and
// prefix conditions are ruled out; a regex is taken to match.
func authorityMayMatch(sm *istioapi.StringMatch, host string) bool {
	switch {
	case sm == nil || sm.GetMatchType() == nil:
		return true
	case sm.GetExact() != "":
		x := strings.ToLower(sm.GetExact())
		return x == host || strings.HasPrefix(x, host+":")
	case sm.GetPrefix() != "":
		p := strings.ToLower(sm.GetPrefix())
		return strings.HasPrefix(host, p) || strings.HasPrefix(p, host+":")
	}
	return true
}

func describeVhost(v *VirtualHost) string {
	switch {
	case v == nil:
		return "no virtual host"
	case v.requireTLS:
		return "the redirecting virtual host " + v.name
	}
	return "the virtual host " + v.name
}

// probeHosts lists a request host for every name the models know, and
// host.
func probeHosts(users, withChallenge *Proxy, host string) []string {
	set := map[string]bool{host: true}
	addName := func(n string) {
		n = strings.ToLower(n)
		n = ServerHostName(n)
		switch {
		case n == "*":
			set["probe.invalid"] = true
		case strings.HasPrefix(n, "*."):
			set["probe"+n[1:]] = true
		case n != "":
			set[n] = true
		}
	}
	for _, m := range []*Proxy{users, withChallenge} {
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
				for _, h := range c.spec.Hosts {
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
