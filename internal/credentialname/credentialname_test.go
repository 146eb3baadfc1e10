package credentialname

import "testing"

func TestParse(t *testing.T) {
	for raw, want := range map[string]Ref{
		"shop-tls":                         {Name: "shop-tls"},
		"edge/shop-tls":                    {Namespace: "edge", Name: "shop-tls"},
		"kubernetes://shop-tls":            {Scheme: "kubernetes", Name: "shop-tls"},
		"kubernetes://edge/shop-tls":       {Scheme: "kubernetes", Namespace: "edge", Name: "shop-tls"},
		"kubernetes-gateway://apps/shop":   {Scheme: "kubernetes-gateway", Namespace: "apps", Name: "shop"},
		"builtin://":                       {Scheme: "builtin"},
		"sds://my-sds":                     {Scheme: "sds", Name: "my-sds"},
		"configmap://istio-system/root-ca": {Scheme: "configmap", Namespace: "istio-system", Name: "root-ca"},
	} {
		if got := Parse(raw); got != want {
			t.Errorf("Parse(%q) = %+v, want %+v", raw, got, want)
		}
	}
}
