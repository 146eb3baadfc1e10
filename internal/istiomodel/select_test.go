package istiomodel

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// The indexed lookups (SelectVirtualHost, chainIndex) pick what comparing
// every name picks, on random names, wildcards and server-name lists; the
// route configurations are finished as Build finishes them, so the lookup
// learns of names that are not "*.suffix" the way it does in a model.
func TestIndexedSelectionMatchesFullComparison(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	labels := []string{"a", "b", "shop", "example", "com", "net"}
	name := func() string {
		n := 1 + rng.IntN(3)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = labels[rng.IntN(len(labels))]
		}
		h := strings.Join(parts, ".")
		switch rng.IntN(6) {
		case 0:
			return "*." + h
		case 1:
			return "*"
		case 2:
			if rng.IntN(10) == 0 {
				return "*" + h // not valid in Istio; still modelled
			}
		case 3:
			if rng.IntN(10) == 0 {
				return "." + h
			}
		}
		return h
	}
	for round := range 20000 {
		vhosts := map[string]*VirtualHost{}
		var chains []*Chain
		for range rng.IntN(8) {
			n := name()
			vhosts[n] = &VirtualHost{name: n}
			var hosts []string
			for range 1 + rng.IntN(3) {
				hosts = append(hosts, name())
			}
			chains = append(chains, &Chain{sni: sniHosts(hosts)})
		}
		rc := newRouteConfig("", nil, vhosts)
		idx := newChainIndex(chains)
		for range 20 {
			h := name()
			if got, want := rc.SelectVirtualHost(h), selectVhostByComparison(rc, h); got != want {
				t.Fatalf("round %d: virtual host for %q: got %v, want %v (names %v)", round, h, got, want, keys(rc.vhosts))
			}
			gc, ga := idx.selectChain(h)
			wc, wa := selectChainByComparison(chains, h)
			if gc != wc || ga != wa {
				t.Fatalf("round %d: chain for %q: got %v (ambiguous %v), want %v (%v)", round, h, gc, ga, wc, wa)
			}
		}
	}
}

func keys(m map[string]*VirtualHost) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// selectVhostByComparison is Envoy's rule written plainly: the exact name,
// else the longest wildcard that covers host, else "*".
func selectVhostByComparison(rc *RouteConfig, host string) *VirtualHost {
	if vh := rc.vhosts[host]; vh != nil {
		return vh
	}
	var best *VirtualHost
	for name, vh := range rc.vhosts {
		if len(name) < 2 || !strings.HasPrefix(name, "*") {
			continue
		}
		if len(host) >= len(name) && strings.HasSuffix(host, name[1:]) && (best == nil || len(name) > len(best.name)) {
			best = vh
		}
	}
	if best != nil {
		return best
	}
	return rc.vhosts["*"]
}

// selectChainByComparison ranks every chain: an exact name first, then the
// longest covering wildcard, then the chains for every name.
func selectChainByComparison(chains []*Chain, sni string) (*Chain, bool) {
	var best, catchAll []*Chain
	bestRank := 0
	for _, c := range chains {
		if len(c.sni) == 0 {
			catchAll = append(catchAll, c)
			continue
		}
		rank := 0
		for _, s := range c.sni {
			switch {
			case s == sni:
				rank = max(rank, 1<<30)
			case HostWithin(sni, s):
				rank = max(rank, len(s))
			}
		}
		switch {
		case rank == 0:
		case rank > bestRank:
			best, bestRank = []*Chain{c}, rank
		case rank == bestRank:
			best = append(best, c)
		}
	}
	if len(best) == 0 {
		best = catchAll
	}
	switch len(best) {
	case 0:
		return nil, false
	case 1:
		return best[0], false
	}
	return best[0], true
}
