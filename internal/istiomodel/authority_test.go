package istiomodel

import (
	"testing"

	istioapi "istio.io/api/networking/v1"
)

func TestAuthorityMayMatch(t *testing.T) {
	exact := func(v string) *istioapi.StringMatch {
		return &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Exact{Exact: v}}
	}
	prefix := func(v string) *istioapi.StringMatch {
		return &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Prefix{Prefix: v}}
	}
	regex := &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Regex{Regex: "other\\..*"}}
	tests := []struct {
		name string
		sm   *istioapi.StringMatch
		host string
		want bool
	}{
		{"no condition", nil, "shop.example.com", true},
		{"exact other name", exact("other.example.net"), "shop.example.com", false},
		{"exact same name", exact("shop.example.com"), "shop.example.com", true},
		{"exact with a port", exact("shop.example.com:8443"), "shop.example.com", true},
		{"exact, other case", exact("Shop.Example.com"), "shop.example.com", true},
		{"prefix of the name", prefix("shop."), "shop.example.com", true},
		{"prefix of another name", prefix("api."), "shop.example.com", false},
		{"prefix with a port", prefix("shop.example.com:"), "shop.example.com", true},
		{"a regex is taken to match", regex, "shop.example.com", true},
	}
	for _, tt := range tests {
		if got := authorityMayMatch(tt.sm, tt.host); got != tt.want {
			t.Errorf("%s: authorityMayMatch(%v, %s) = %v, want %v", tt.name, tt.sm, tt.host, got, tt.want)
		}
	}
}
