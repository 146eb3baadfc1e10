package shim

import (
	"fmt"
	"slices"
	"strings"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	istioapi "istio.io/api/networking/v1alpha3"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/istio-acme/istio-acme-issuer/internal/credentialname"
	"github.com/istio-acme/istio-acme-issuer/internal/dnsname"
)

// ourIssuerGroup is the group of this project's ACME issuers, which prove
// names with HTTP-01 only: no wildcards.
const ourIssuerGroup = "istio-acme.io"

// Desired is what one Gateway asks for: a Certificate per credential
// Secret, and why servers were left out.
type Desired struct {
	Certificates []*cmapi.Certificate
	// Skipped says, per server left out, why and what to do instead.
	Skipped []string
}

// credential is where Istio reads an HTTPS server's certificate.
type credential struct {
	// Namespace is empty when it is the gateway pods' namespace.
	Namespace, Name string
}

// serverCredential reads credentialName as Istio does for a gateway: a
// plain name or "kubernetes://" is a Secret in the gateway pods' namespace
// (Namespace empty) unless it names one. Other forms are not Secrets this
// controller can fill: why says so.
func serverCredential(raw string) (c credential, why string) {
	ref := credentialname.Parse(raw)
	switch {
	case ref.Scheme == "kubernetes-gateway":
		return c, fmt.Sprintf("credentialName %s is Istio's form for Kubernetes Gateway API Gateways, whose certificates cert-manager's gateway-shim manages", raw)
	case !ref.IsKubernetesSecret():
		return c, fmt.Sprintf("credentialName %s is not a Kubernetes Secret (%s:// is served by Istio or an SDS server, not by a Certificate)", raw, ref.Scheme)
	}
	if errs := validation.IsDNS1123Subdomain(ref.Name); len(errs) > 0 {
		return c, fmt.Sprintf("credentialName %s: %q is not a valid Secret name (%s)", raw, ref.Name, strings.Join(errs, "; "))
	}
	if ref.Namespace != "" {
		if errs := validation.IsDNS1123Label(ref.Namespace); len(errs) > 0 {
			return c, fmt.Sprintf("credentialName %s: %q is not a valid namespace (%s)", raw, ref.Namespace, strings.Join(errs, "; "))
		}
	}
	return credential{Namespace: ref.Namespace, Name: ref.Name}, ""
}

// certificateModes are the server TLS modes in which the gateway presents
// the credential's certificate.
var certificateModes = []istioapi.ServerTLSSettings_TLSmode{
	istioapi.ServerTLSSettings_SIMPLE, istioapi.ServerTLSSettings_MUTUAL, istioapi.ServerTLSSettings_OPTIONAL_MUTUAL,
}

// DesiredCertificates returns the Certificates a Gateway asks for: one per
// credential Secret of its HTTPS servers, named after the Secret, in the
// Secret's namespace (podNamespace unless credentialName names one), for
// the servers' hosts (the host part of namespace/host; "*" left out; a
// wildcard left out when the issuer is one of ours, which proves HTTP-01
// only). Servers sharing a Secret share the Certificate. When the gateway
// pods' namespace is not known, podNamespace is empty and noNamespace says
// why and what to do; servers that need it are skipped with that.
func DesiredCertificates(gw *istionet.Gateway, podNamespace, noNamespace string) (Desired, error) {
	ref, err := issuerRef(gw.Annotations)
	if err != nil {
		return Desired{}, err
	}
	var out Desired
	byCredential := map[credential]*cmapi.Certificate{}
	var order []credential
	for i, s := range gw.Spec.Servers {
		where := fmt.Sprintf("spec.servers[%d]", i)
		if s.GetPort().GetName() != "" {
			where += " (" + s.GetPort().GetName() + ")"
		}
		t := s.GetTls()
		if t == nil || !slices.Contains(certificateModes, t.GetMode()) {
			continue // not a server whose certificate we can provide
		}
		raw := t.GetCredentialName()
		switch {
		case len(t.GetCredentialNames()) > 0:
			out.Skipped = append(out.Skipped, where+": credentialNames (several certificates) is not filled by one Certificate; write a Certificate per Secret")
			continue
		case raw == "":
			continue // files in the pod (serverCertificate)
		}
		cred, why := serverCredential(raw)
		if why != "" {
			out.Skipped = append(out.Skipped, where+": "+why)
			continue
		}
		if cred.Namespace == "" {
			if podNamespace == "" {
				out.Skipped = append(out.Skipped, fmt.Sprintf("%s: credentialName %s is read from the gateway pods' namespace, and %s", where, raw, noNamespace))
				continue
			}
			cred.Namespace = podNamespace
		}
		// A Gateway's author gets Certificates only where the Gateway's
		// own pods read them or in the Gateway's own namespace: never in
		// a third namespace, whose Secret of that name may be another
		// team's.
		if cred.Namespace != gw.Namespace && cred.Namespace != podNamespace {
			out.Skipped = append(out.Skipped, fmt.Sprintf("%s: credentialName %s names namespace %s, which is neither the Gateway's (%s) nor its gateway pods' (%s); Certificates are kept only there: write the credentialName without a namespace, or keep that Certificate in %s yourself",
				where, raw, cred.Namespace, gw.Namespace, orUnknown(podNamespace), cred.Namespace))
			continue
		}
		// A namespaced issuer resolves in the Certificate's namespace: in
		// the gateway pods' namespace it would be the platform's issuer,
		// not the Gateway author's.
		if cred.Namespace != gw.Namespace && namespacedIssuerKind(ref.Kind) {
			out.Skipped = append(out.Skipped, fmt.Sprintf("%s: the Certificate for credentialName %s goes to the gateway pods' namespace %s, where %s %s would be that namespace's issuer, not this Gateway's; name a cluster-scoped issuer (cert-manager.io/cluster-issuer, or cert-manager.io/issuer-kind: ACMEClusterIssuer), or serve the Secret from the Gateway's namespace (credentialName %s/%s)",
				where, raw, cred.Namespace, ref.Kind, ref.Name, gw.Namespace, cred.Name))
			continue
		}
		var hosts []string
		for _, h := range s.GetHosts() {
			if _, host, ok := strings.Cut(h, "/"); ok {
				h = host
			}
			h = dnsname.Canonical(h)
			switch {
			case h == "*" || h == "":
				continue
			case strings.HasPrefix(h, "*.") && ref.Group == ourIssuerGroup:
				out.Skipped = append(out.Skipped, fmt.Sprintf("%s: host %s left out: %s %s proves names with HTTP-01, which cannot prove a wildcard; use a DNS-01 issuer for it, or list the exact hosts", where, h, ref.Kind, ref.Name))
				continue
			}
			hosts = append(hosts, h)
		}
		if len(hosts) == 0 {
			out.Skipped = append(out.Skipped, where+": no host a certificate can name")
			continue
		}
		crt, ok := byCredential[cred]
		if !ok {
			crt = &cmapi.Certificate{
				ObjectMeta: metav1.ObjectMeta{Namespace: cred.Namespace, Name: cred.Name},
				Spec: cmapi.CertificateSpec{
					SecretName: cred.Name,
					IssuerRef:  cmmeta.IssuerReference{Name: ref.Name, Kind: ref.Kind, Group: ref.Group},
				},
			}
			if err := applyAnnotations(crt, gw.Annotations); err != nil {
				return Desired{}, err
			}
			if temporaryCertificate(gw) {
				crt.Annotations = map[string]string{cmapi.IssueTemporaryCertificateAnnotation: "true"}
			}
			byCredential[cred] = crt
			order = append(order, cred)
		}
		for _, h := range hosts {
			if !slices.Contains(crt.Spec.DNSNames, h) {
				crt.Spec.DNSNames = append(crt.Spec.DNSNames, h)
			}
		}
	}
	for _, c := range order {
		out.Certificates = append(out.Certificates, byCredential[c])
	}
	return out, nil
}

// temporaryCertificate reports whether the Certificates should have
// cert-manager store a temporary certificate in a Secret that does not
// exist yet: when the Gateway asks so (ingress-shim's annotation), or,
// unless it says "false", when it redirects to HTTPS. Its own HTTPS server
// then completes the handshake of a first issuance, so the CA can follow
// the redirect to the challenge route; without one it cannot, and nothing
// else may serve the host there.
func temporaryCertificate(gw *istionet.Gateway) bool {
	if v, ok := gw.Annotations[cmapi.IssueTemporaryCertificateAnnotation]; ok {
		return v == "true"
	}
	return slices.ContainsFunc(gw.Spec.Servers, func(s *istioapi.Server) bool { return s.GetTls().GetHttpsRedirect() })
}

// namespacedIssuerKind reports whether an issuer kind is namespaced:
// cert-manager's Issuer, our ACMEIssuer, and any external kind whose name
// does not say Cluster (external issuers name their cluster kinds so).
func namespacedIssuerKind(kind string) bool {
	return !strings.Contains(kind, "Cluster")
}

func orUnknown(ns string) string {
	if ns == "" {
		return "not known"
	}
	return ns
}
