package istiomodel

// SelectVirtualHost returns the virtual host Envoy picks for host, or nil
// (also on a nil route configuration).
func (rc *RouteConfig) SelectVirtualHost(host string) *VirtualHost {
	if rc == nil {
		return nil
	}
	if vh := rc.vhosts[host]; vh != nil {
		return vh
	}
	// The longest wildcard covering host is "*" and its longest suffix
	// that names a virtual host: one from a dot, or from anywhere when a
	// name is not "*.suffix". A wildcard is never longer than the host.
	for i := 1; i < len(host); i++ {
		if host[i] == '.' || rc.oddWildcard {
			if vh := rc.vhosts["*"+host[i:]]; vh != nil {
				return vh
			}
		}
	}
	return rc.vhosts["*"]
}

// SelectChain returns the TLS filter chain Envoy picks for sni on a pod
// port, or nil; ambiguous is true when two chains match equally well
// (Envoy would reject the listener).
func (p *Proxy) SelectChain(port uint32, sni string) (chain *Chain, ambiguous bool) {
	return newChainIndex(p.tls[port]).selectChain(sni)
}

// chainIndex answers selectChain for many server names in one pass over
// the chains: an exact name beats every wildcard, the longest wildcard
// that covers the name beats the shorter ones, and chains for every name
// ("*") catch the rest. Ties keep the chains' order.
type chainIndex struct {
	exact    map[string][]*Chain // by each name, wildcards included
	catchAll []*Chain
	// oddWildcard is set when a wildcard does not start with "*.": then
	// suffixes from every position are looked up, not only from dots.
	oddWildcard bool
}

func newChainIndex(chains []*Chain) *chainIndex {
	ci := &chainIndex{exact: map[string][]*Chain{}}
	for _, c := range chains {
		if len(c.sni) == 0 {
			ci.catchAll = append(ci.catchAll, c)
			continue
		}
		for _, s := range c.sni {
			if l := ci.exact[s]; len(l) == 0 || l[len(l)-1] != c { // a name listed twice
				ci.exact[s] = append(l, c)
			}
			ci.oddWildcard = ci.oddWildcard || isOddWildcard(s)
		}
	}
	return ci
}

func (ci *chainIndex) selectChain(sni string) (chain *Chain, ambiguous bool) {
	best := ci.candidates(sni)
	if len(best) == 0 {
		return nil, false
	}
	return best[0], len(best) > 1
}

// candidates are the chains that match sni best, in the chains' order:
// more than one when Envoy would reject the listener.
func (ci *chainIndex) candidates(sni string) []*Chain {
	best := ci.exact[sni]
	// Else the longest wildcard covering sni: its longest suffix that
	// names one, from a dot (or from anywhere, see oddWildcard).
	for i := 0; len(best) == 0 && i < len(sni); i++ {
		if sni[i] == '.' || ci.oddWildcard {
			best = ci.exact["*"+sni[i:]]
		}
	}
	if len(best) == 0 {
		best = ci.catchAll
	}
	return best
}
