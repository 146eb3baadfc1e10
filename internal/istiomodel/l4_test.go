package istiomodel

import (
	"testing"

	istioapi "istio.io/api/networking/v1"
)

// A tls or tcp route's match applies to a gateway's server by its port and
// gateways alone, as in istiod's l4SingleMatch: source conditions are not
// looked at on gateways.
func TestL4SourceMatches(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    *istioapi.TLSMatchAttributes
		want bool
	}{
		{"no conditions", &istioapi.TLSMatchAttributes{}, true},
		{"this gateway, short name", &istioapi.TLSMatchAttributes{Gateways: []string{"gw"}}, true},
		{"another gateway", &istioapi.TLSMatchAttributes{Gateways: []string{"other/gw"}}, false},
		{"the server's port", &istioapi.TLSMatchAttributes{Port: 443}, true},
		{"another port", &istioapi.TLSMatchAttributes{Port: 8443}, false},
		{"other source labels", &istioapi.TLSMatchAttributes{SourceLabels: map[string]string{"istio": "egress"}}, true},
		{"another source namespace", &istioapi.TLSMatchAttributes{SourceNamespace: "elsewhere"}, true},
	} {
		if got := l4SourceMatches(tc.m, 443, "istio-system/gw", "istio-system"); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
