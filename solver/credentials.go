package solver

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"

	istioapi "istio.io/api/networking/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/internal/credentialname"
	"github.com/istio-acme/istio-acme-issuer/internal/kubeutil"
)

// credentialSecret is the Secret an HTTPS server's certificate comes from.
type credentialSecret struct {
	Namespace, Name string
	// Raw is the credentialName as written.
	Raw string
}

// credentialRef resolves an HTTPS server's certificate to the Secret Istio
// fetches over SDS, as Istio 1.31 (pilot/pkg/model/credentials) reads
// credentialName: "name" and "kubernetes://name" are Secret name in the
// gateway pods' namespace, "ns/name", "kubernetes://ns/name" and
// "kubernetes-gateway://ns/name" Secret name in ns. ok is false when the
// handshake's certificate is not a Secret that can be checked: files
// mounted in the pod (serverCertificate), the workload's own certificate
// ("builtin://"), or forms this controller does not know (the server is
// then trusted to work). "invalid://" and "configmap://" never hold a
// serving certificate: they resolve to a Secret that does not exist.
func credentialRef(t *istioapi.ServerTLSSettings, podNamespace string) (credentialSecret, bool) {
	raw := t.GetCredentialName()
	if names := t.GetCredentialNames(); len(names) > 0 {
		raw = names[0]
	}
	if raw == "" {
		if t.GetServerCertificate() != "" || len(t.GetTlsCertificates()) > 0 {
			return credentialSecret{}, false
		}
		// No certificate at all: nothing Istio can serve.
		return credentialSecret{Raw: raw, Namespace: podNamespace, Name: ""}, true
	}
	ref := credentialname.Parse(raw)
	switch {
	case ref.IsKubernetesSecret(), ref.Scheme == "kubernetes-gateway":
		return credentialSecret{Raw: raw, Namespace: cmp.Or(ref.Namespace, podNamespace), Name: ref.Name}, true
	case ref.Scheme == "invalid", ref.Scheme == "configmap":
		return credentialSecret{Raw: raw, Namespace: podNamespace, Name: ""}, true
	}
	return credentialSecret{}, false // builtin:// or a source this controller does not know
}

// SecretCredentials tells from the API server whether a credential Secret
// can serve a TLS handshake. It reads each Secret by name (never a list),
// in the namespaces the controller may read Secrets in.
type SecretCredentials struct {
	Reader client.Reader
}

// State reads Secret namespace/name: usable when it holds a certificate and
// key that load as a pair (tls.crt/tls.key, or Istio's generic cert/key).
// A Secret the controller may not read is trusted to work, with the
// permission noted for the self-check's message.
func (c SecretCredentials) State(ctx context.Context, namespace, name string) CredentialState {
	if name == "" {
		return CredentialState{Problem: "it names no certificate"}
	}
	var sec corev1.Secret
	err := c.Reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &sec)
	switch {
	case apierrors.IsNotFound(err):
		return CredentialState{Missing: true, Problem: fmt.Sprintf("Secret %s/%s does not exist yet", namespace, name)}
	case err != nil:
		return CredentialState{Usable: true, Problem: kubeutil.ForbiddenHint(fmt.Errorf("reading Secret %s/%s: %w", namespace, name, err), kubeutil.TemporaryHTTPSHint).Error()}
	}
	return secretState(&sec)
}

// secretState checks the certificate and key a Secret holds.
func secretState(sec *corev1.Secret) CredentialState {
	certPEM, keyPEM := sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey]
	if len(certPEM) == 0 && len(keyPEM) == 0 {
		certPEM, keyPEM = sec.Data["cert"], sec.Data["key"]
	}
	if len(certPEM) == 0 || len(keyPEM) == 0 {
		return CredentialState{Problem: fmt.Sprintf("Secret %s/%s holds no certificate and key yet", sec.Namespace, sec.Name)}
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return CredentialState{Problem: fmt.Sprintf("Secret %s/%s holds no usable certificate and key (%v)", sec.Namespace, sec.Name, err)}
	}
	return CredentialState{Usable: true}
}
