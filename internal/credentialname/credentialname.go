// Package credentialname reads an Istio Gateway server's credentialName the
// way Istio 1.31 does (pilot/pkg/model/credentials): a plain name, or
// "kubernetes://", is a Secret in the gateway pods' namespace unless the
// name is "namespace/name"; other schemes name other sources.
package credentialname

import "strings"

// Ref is a credentialName taken apart.
type Ref struct {
	// Scheme is what comes before "://", or "" for a plain name (which
	// Istio reads as "kubernetes://").
	Scheme string
	// Namespace is the one the name gives, or "" for the gateway pods'.
	Namespace string
	// Name is the Secret's (or other source's) name.
	Name string
}

// Parse takes a credentialName apart.
func Parse(raw string) Ref {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		scheme, rest = "", raw
	}
	ns, name, explicit := strings.Cut(rest, "/")
	if !explicit {
		ns, name = "", rest
	}
	return Ref{Scheme: scheme, Namespace: ns, Name: name}
}

// IsKubernetesSecret reports whether Istio reads the credential from a
// Secret through its default Kubernetes source: a plain name or
// "kubernetes://".
func (r Ref) IsKubernetesSecret() bool {
	return r.Scheme == "" || r.Scheme == "kubernetes"
}
