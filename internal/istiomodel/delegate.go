package istiomodel

import (
	"maps"
	"strings"

	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
)

// mergeDelegates returns the VirtualService istiod routes with: each HTTP
// route that delegates is replaced by the delegate's routes, each merged
// with the root's match (a delegate route whose match conflicts with the
// root's is dropped); a delegate that does not exist, has hosts, or is not
// exported to the root's namespace drops the root route. The root is
// returned unchanged when it delegates nothing.
func mergeDelegates(root *istionet.VirtualService, delegates map[string]*istionet.VirtualService, mesh Mesh) *istionet.VirtualService {
	delegating := false
	for _, h := range root.Spec.Http {
		if h.GetDelegate() != nil {
			delegating = true
		}
	}
	if !delegating {
		return root
	}
	var merged []*istioapi.HTTPRoute
	for _, h := range root.Spec.Http {
		d := h.GetDelegate()
		if d == nil {
			merged = append(merged, h)
			continue
		}
		ns := d.GetNamespace()
		if ns == "" {
			ns = root.Namespace
		}
		delegate := delegates[ns+"/"+d.GetName()]
		if delegate == nil {
			continue
		}
		if exp := exportSet(delegate.Spec.ExportTo, delegate.Namespace, mesh); !exp["*"] && !exp[root.Namespace] {
			continue
		}
		for _, sub := range delegate.Spec.Http {
			if r := mergeDelegateRoute(h, sub, delegate.Namespace); r != nil {
				merged = append(merged, r)
			}
		}
	}
	out := root.DeepCopy()
	out.Spec.Http = merged
	return out
}

// mergeDelegateRoute merges one delegate route into its root route's match
// conditions, as istiod's mergeHTTPRoute; nil when they conflict.
func mergeDelegateRoute(root, sub *istioapi.HTTPRoute, delegateNamespace string) *istioapi.HTTPRoute {
	out := &istioapi.HTTPRoute{
		Name:           sub.GetName(),
		Route:          sub.GetRoute(),
		Redirect:       sub.GetRedirect(),
		DirectResponse: sub.GetDirectResponse(),
	}
	if out.Name == "" {
		out.Name = root.GetName()
	} else if root.GetName() != "" {
		out.Name = root.GetName() + "-" + out.Name
	}
	if out.DirectResponse == nil {
		out.DirectResponse = root.GetDirectResponse()
	}
	// The delegate's gateway references were resolved in its own namespace.
	subMatches := make([]*istioapi.HTTPMatchRequest, 0, len(sub.GetMatch()))
	for _, m := range sub.GetMatch() {
		c := copyMatch(m)
		for i, g := range c.Gateways {
			if g != "mesh" {
				c.Gateways[i] = resolveGatewayRef(g, delegateNamespace)
			}
		}
		subMatches = append(subMatches, c)
	}
	rootMatches := root.GetMatch()
	switch {
	case len(rootMatches) == 0:
		out.Match = subMatches
	case len(subMatches) == 0:
		out.Match = rootMatches
	default:
		for _, s := range subMatches {
			found := false
			for _, r := range rootMatches {
				if matchConflict(r, s) {
					continue
				}
				out.Match = append(out.Match, mergeMatch(r, s))
				found = true
			}
			if !found {
				return nil
			}
		}
		if len(out.Match) == 0 {
			return nil
		}
	}
	return out
}

func copyMatch(m *istioapi.HTTPMatchRequest) *istioapi.HTTPMatchRequest {
	c := &istioapi.HTTPMatchRequest{
		Name:            m.GetName(),
		Uri:             m.GetUri(),
		Scheme:          m.GetScheme(),
		Method:          m.GetMethod(),
		Authority:       m.GetAuthority(),
		Headers:         m.GetHeaders(),
		WithoutHeaders:  m.GetWithoutHeaders(),
		QueryParams:     m.GetQueryParams(),
		IgnoreUriCase:   m.GetIgnoreUriCase(),
		Port:            m.GetPort(),
		SourceLabels:    m.GetSourceLabels(),
		SourceNamespace: m.GetSourceNamespace(),
		Gateways:        append([]string(nil), m.GetGateways()...),
	}
	return c
}

// mergeMatch fills what the delegate's match leaves open from the root's.
func mergeMatch(root, sub *istioapi.HTTPMatchRequest) *istioapi.HTTPMatchRequest {
	out := copyMatch(sub)
	if out.Name == "" {
		out.Name = root.GetName()
	} else if root.GetName() != "" {
		out.Name = root.GetName() + "-" + out.Name
	}
	if out.Uri == nil {
		out.Uri = root.GetUri()
	}
	if out.Scheme == nil {
		out.Scheme = root.GetScheme()
	}
	if out.Method == nil {
		out.Method = root.GetMethod()
	}
	if out.Authority == nil {
		out.Authority = root.GetAuthority()
	}
	out.Headers = mergeStringMatches(root.GetHeaders(), sub.GetHeaders())
	out.WithoutHeaders = mergeStringMatches(root.GetWithoutHeaders(), sub.GetWithoutHeaders())
	out.QueryParams = mergeStringMatches(root.GetQueryParams(), sub.GetQueryParams())
	if out.Port == 0 {
		out.Port = root.GetPort()
	}
	out.SourceLabels = mergeLabels(root.GetSourceLabels(), sub.GetSourceLabels())
	if out.SourceNamespace == "" {
		out.SourceNamespace = root.GetSourceNamespace()
	}
	if len(out.Gateways) == 0 {
		out.Gateways = root.GetGateways()
	}
	return out
}

func mergeStringMatches(root, sub map[string]*istioapi.StringMatch) map[string]*istioapi.StringMatch {
	if len(root) == 0 && len(sub) == 0 {
		return nil
	}
	out := maps.Clone(root)
	if out == nil {
		out = map[string]*istioapi.StringMatch{}
	}
	maps.Copy(out, sub)
	return out
}

func mergeLabels(root, sub map[string]string) map[string]string {
	if len(root) == 0 && len(sub) == 0 {
		return nil
	}
	out := maps.Clone(root)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, sub)
	return out
}

// matchConflict mirrors istiod's hasConflict: the delegate's match must be
// narrower than the root's.
func matchConflict(root, leaf *istioapi.HTTPMatchRequest) bool {
	pairs := [][2]*istioapi.StringMatch{
		{root.GetUri(), leaf.GetUri()}, {root.GetScheme(), leaf.GetScheme()},
		{root.GetMethod(), leaf.GetMethod()}, {root.GetAuthority(), leaf.GetAuthority()},
	}
	for _, p := range pairs {
		if stringMatchConflict(p[0], p[1]) {
			return true
		}
	}
	for k, v := range leaf.GetHeaders() {
		if stringMatchConflict(root.GetHeaders()[k], v) {
			return true
		}
	}
	for k, v := range leaf.GetWithoutHeaders() {
		if stringMatchConflict(root.GetWithoutHeaders()[k], v) {
			return true
		}
	}
	for k, v := range leaf.GetQueryParams() {
		if stringMatchConflict(root.GetQueryParams()[k], v) {
			return true
		}
	}
	if root.GetIgnoreUriCase() != leaf.GetIgnoreUriCase() {
		return true
	}
	if root.GetPort() > 0 && leaf.GetPort() > 0 && root.GetPort() != leaf.GetPort() {
		return true
	}
	if root.GetSourceNamespace() != "" && leaf.GetSourceNamespace() != root.GetSourceNamespace() {
		return true
	}
	for k, v := range leaf.GetSourceLabels() {
		if rv, ok := root.GetSourceLabels()[k]; ok && rv != v {
			return true
		}
	}
	if len(root.GetGateways()) > 0 && len(leaf.GetGateways()) > 0 {
		if len(root.GetGateways()) < len(leaf.GetGateways()) {
			return true
		}
		for _, g := range leaf.GetGateways() {
			found := false
			for _, r := range root.GetGateways() {
				if r == g {
					found = true
				}
			}
			if !found {
				return true
			}
		}
	}
	return false
}

// stringMatchConflict mirrors istiod's rule for one condition.
func stringMatchConflict(root, leaf *istioapi.StringMatch) bool {
	if root == nil || leaf == nil {
		return false
	}
	if root.GetRegex() != "" && (leaf.GetRegex() != "" || leaf.GetPrefix() != "" || leaf.GetExact() != "") {
		return true
	}
	if leaf.GetRegex() != "" && (root.GetRegex() != "" || root.GetPrefix() != "" || root.GetExact() != "") {
		return true
	}
	if exact := root.GetExact(); exact != "" {
		return leaf.GetPrefix() != "" || leaf.GetExact() != exact
	}
	if prefix := root.GetPrefix(); prefix != "" {
		if leaf.GetPrefix() != "" {
			return !strings.HasPrefix(leaf.GetPrefix(), prefix)
		}
		if leaf.GetExact() != "" {
			return !strings.HasPrefix(leaf.GetExact(), prefix)
		}
	}
	return true
}
