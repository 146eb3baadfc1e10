package dnsname

import "testing"

func TestCanonical(t *testing.T) {
	for in, want := range map[string]string{
		"shop.example.com":  "shop.example.com",
		"Shop.Example.COM.": "shop.example.com",
		"*.example.com.":    "*.example.com",
		"":                  "",
		"example.com..":     "example.com.",
	} {
		if got := Canonical(in); got != want {
			t.Errorf("Canonical(%q) = %q, want %q", in, got, want)
		}
	}
}
