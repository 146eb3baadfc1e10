package istiomodel

import (
	"regexp"
	"strings"

	istioapi "istio.io/api/networking/v1"
)

// CARequest is the CA's validation request as a route sees it: GET of the
// token path with the challenged host as authority, over http first and
// https after a redirect, with no query string.
type CARequest struct {
	Host, Path, Scheme string
}

// caHeaders are the request headers a CA's validation request carries
// besides the pseudo-headers. Their values differ between CAs (the
// User-Agent above all), so a condition on one of them is taken to match:
// a route that may catch the CA's request counts as catching it.
var caHeaders = map[string]bool{"user-agent": true, "accept": true, "accept-encoding": true}

// MatchesCA reports whether the route catches the CA's request.
func (r *Route) MatchesCA(req CARequest) bool {
	m := r.match
	if m == nil {
		return true
	}
	path := req.Path
	if uri := m.GetUri(); uri != nil && !stringMatches(uri, path, m.GetIgnoreUriCase()) {
		return false
	}
	if m.GetScheme() != nil && !stringMatches(m.GetScheme(), req.Scheme, false) {
		return false
	}
	if m.GetMethod() != nil && !stringMatches(m.GetMethod(), "GET", false) {
		return false
	}
	if m.GetAuthority() != nil && !stringMatches(m.GetAuthority(), req.Host, false) {
		return false
	}
	for name, sm := range m.GetHeaders() {
		value, present, unknown := caHeader(name, req)
		switch {
		case unknown:
		case !present:
			return false
		case isPresentMatch(sm):
		case !stringMatches(sm, value, false):
			return false
		}
	}
	for name, sm := range m.GetWithoutHeaders() {
		value, present, unknown := caHeader(name, req)
		switch {
		case unknown:
		case isPresentMatch(sm):
			if present {
				return false
			}
		case stringMatches(sm, value, false): // a missing header counts as empty
			return false
		}
	}
	// The CA's request has no query string: any query condition fails.
	return len(m.GetQueryParams()) == 0
}

// caHeader is a header of the CA's request: its value, whether it is sent,
// and whether its value is unknown (then any condition on it is taken to
// match, so a route that may catch the CA's request counts as catching it).
func caHeader(name string, req CARequest) (value string, present, unknown bool) {
	switch n := strings.ToLower(name); {
	case n == ":authority" || n == "host":
		return req.Host, true, false
	case n == ":method":
		return "GET", true, false
	case n == ":scheme":
		return req.Scheme, true, false
	case n == ":path":
		return req.Path, true, false
	case caHeaders[n]:
		return "", true, true
	}
	return "", false, false // JWT claims ("@request.auth.claims") and other headers: absent
}

// isPresentMatch is a condition that only asks for the header (no value, or
// Istio's regex "*").
func isPresentMatch(sm *istioapi.StringMatch) bool {
	return sm == nil || sm.GetMatchType() == nil || sm.GetRegex() == "*"
}

// stringMatches evaluates an Istio StringMatch as Envoy does (regex: RE2,
// whole value).
func stringMatches(sm *istioapi.StringMatch, value string, ignoreCase bool) bool {
	switch {
	case sm.GetMatchType() == nil:
		return true
	case sm.GetExact() != "":
		if ignoreCase {
			return strings.EqualFold(sm.GetExact(), value)
		}
		return sm.GetExact() == value
	case sm.GetPrefix() != "":
		if ignoreCase {
			return strings.HasPrefix(strings.ToLower(value), strings.ToLower(sm.GetPrefix()))
		}
		return strings.HasPrefix(value, sm.GetPrefix())
	case sm.GetRegex() != "":
		expr := "^(?:" + sm.GetRegex() + ")$"
		if ignoreCase {
			expr = "(?i)" + expr
		}
		re, err := regexp.Compile(expr)
		return err == nil && re.MatchString(value)
	}
	// An empty exact or prefix: Envoy's empty prefix matches everything,
	// an empty exact only the empty value.
	if _, ok := sm.GetMatchType().(*istioapi.StringMatch_Prefix); ok {
		return true
	}
	return value == ""
}
