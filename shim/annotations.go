// Package shim keeps a cert-manager Certificate for every HTTPS server of an
// annotated Istio Gateway, as cert-manager's ingress-shim does for
// Kubernetes Ingresses: the annotations have ingress-shim's names and
// meanings.
package shim

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	apiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/cert-manager/cert-manager/pkg/util/pki"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Annotated reports whether a Gateway asks for Certificates: it names an
// issuer or a cluster issuer.
func Annotated(annotations map[string]string) bool {
	_, issuer := annotations[cmapi.IngressIssuerNameAnnotationKey]
	_, cluster := annotations[cmapi.IngressClusterIssuerNameAnnotationKey]
	return issuer || cluster
}

// issuerRef reads the issuer a Gateway names, with ingress-shim's rules:
// cert-manager.io/issuer is a namespaced Issuer and
// cert-manager.io/cluster-issuer a ClusterIssuer of cert-manager.io;
// cert-manager.io/issuer-kind and cert-manager.io/issuer-group name another
// kind, such as istio-acme.io's ACMEClusterIssuer.
func issuerRef(annotations map[string]string) (cmmeta.IssuerReference, error) {
	var ref cmmeta.IssuerReference
	name, isIssuer := annotations[cmapi.IngressIssuerNameAnnotationKey]
	clusterName, isCluster := annotations[cmapi.IngressClusterIssuerNameAnnotationKey]
	group, hasGroup := annotations[cmapi.IssuerGroupAnnotationKey]
	switch {
	case isIssuer && isCluster:
		return ref, fmt.Errorf("both %s and %s are set; keep one", cmapi.IngressIssuerNameAnnotationKey, cmapi.IngressClusterIssuerNameAnnotationKey)
	case isCluster && hasGroup:
		return ref, fmt.Errorf("%s names a cert-manager ClusterIssuer and cannot have %s; for another group's cluster issuer use %s with %s and %s (for example ACMEClusterIssuer and istio-acme.io)",
			cmapi.IngressClusterIssuerNameAnnotationKey, cmapi.IssuerGroupAnnotationKey, cmapi.IngressIssuerNameAnnotationKey, cmapi.IssuerKindAnnotationKey, cmapi.IssuerGroupAnnotationKey)
	case isCluster:
		ref = cmmeta.IssuerReference{Name: clusterName, Kind: cmapi.ClusterIssuerKind, Group: "cert-manager.io"}
	case isIssuer:
		ref = cmmeta.IssuerReference{Name: name, Kind: cmapi.IssuerKind, Group: "cert-manager.io"}
	default:
		return ref, fmt.Errorf("neither %s nor %s is set", cmapi.IngressIssuerNameAnnotationKey, cmapi.IngressClusterIssuerNameAnnotationKey)
	}
	if kind, ok := annotations[cmapi.IssuerKindAnnotationKey]; ok {
		ref.Kind = kind
	}
	if hasGroup {
		ref.Group = group
	}
	if ref.Name == "" {
		return ref, errors.New("the issuer's name is empty")
	}
	if ref.Kind == "" || ref.Group == "" {
		return ref, fmt.Errorf("%s and %s must not be empty", cmapi.IssuerKindAnnotationKey, cmapi.IssuerGroupAnnotationKey)
	}
	return ref, nil
}

// applyAnnotations sets the Certificate fields the Gateway's annotations
// ask for. An error names the annotation, the value and what is allowed.
func applyAnnotations(crt *cmapi.Certificate, annotations map[string]string) error {
	var errs []error
	bad := func(key, value, allowed string) {
		errs = append(errs, fmt.Errorf("annotation %s: %q is not %s", key, value, allowed))
	}
	duration := func(key string) *metav1.Duration {
		v, ok := annotations[key]
		if !ok {
			return nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			bad(key, v, "a positive Go duration such as 2160h")
			return nil
		}
		return &metav1.Duration{Duration: d}
	}
	key := func() *cmapi.CertificatePrivateKey {
		if crt.Spec.PrivateKey == nil {
			crt.Spec.PrivateKey = &cmapi.CertificatePrivateKey{}
		}
		return crt.Spec.PrivateKey
	}

	if v, ok := annotations[cmapi.CommonNameAnnotationKey]; ok {
		crt.Spec.CommonName = v
	}
	crt.Spec.Duration = duration(cmapi.DurationAnnotationKey)
	crt.Spec.RenewBefore = duration(cmapi.RenewBeforeAnnotationKey)
	if v, ok := annotations[cmapi.RenewBeforePercentageAnnotationKey]; ok {
		if p, err := strconv.ParseInt(v, 10, 32); err != nil || p < 1 || p > 99 {
			bad(cmapi.RenewBeforePercentageAnnotationKey, v, "a whole number from 1 to 99")
		} else {
			crt.Spec.RenewBeforePercentage = ptr.To(int32(p))
		}
	}
	if v, ok := annotations[cmapi.RevisionHistoryLimitAnnotationKey]; ok {
		if n, err := strconv.ParseInt(v, 10, 32); err != nil || n < 1 {
			bad(cmapi.RevisionHistoryLimitAnnotationKey, v, "a whole number of at least 1")
		} else {
			crt.Spec.RevisionHistoryLimit = ptr.To(int32(n))
		}
	}
	if v, ok := annotations[cmapi.UsagesAnnotationKey]; ok {
		for _, u := range strings.Split(v, ",") {
			usage := cmapi.KeyUsage(strings.TrimSpace(u))
			_, isKU := apiutil.KeyUsageType(usage)
			_, isEKU := apiutil.ExtKeyUsageType(usage)
			if !isKU && !isEKU {
				bad(cmapi.UsagesAnnotationKey, string(usage), "a key usage cert-manager knows (such as digital signature, key encipherment, server auth)")
				continue
			}
			crt.Spec.Usages = append(crt.Spec.Usages, usage)
		}
	}
	if v, ok := annotations[cmapi.PrivateKeyAlgorithmAnnotationKey]; ok {
		switch a := cmapi.PrivateKeyAlgorithm(v); a {
		case cmapi.RSAKeyAlgorithm, cmapi.ECDSAKeyAlgorithm, cmapi.Ed25519KeyAlgorithm:
			key().Algorithm = a
		default:
			bad(cmapi.PrivateKeyAlgorithmAnnotationKey, v, "RSA, ECDSA or Ed25519")
		}
	}
	if v, ok := annotations[cmapi.PrivateKeySizeAnnotationKey]; ok {
		size, err := strconv.Atoi(v)
		algorithm := cmapi.RSAKeyAlgorithm
		if crt.Spec.PrivateKey != nil && crt.Spec.PrivateKey.Algorithm != "" {
			algorithm = crt.Spec.PrivateKey.Algorithm
		}
		switch {
		case err != nil:
			bad(cmapi.PrivateKeySizeAnnotationKey, v, "a whole number")
		case algorithm == cmapi.RSAKeyAlgorithm && (size < pki.MinRSAKeySize || size > pki.MaxRSAKeySize):
			bad(cmapi.PrivateKeySizeAnnotationKey, v, fmt.Sprintf("an RSA key size from %d to %d", pki.MinRSAKeySize, pki.MaxRSAKeySize))
		case algorithm == cmapi.ECDSAKeyAlgorithm && size != 256 && size != 384 && size != 521:
			bad(cmapi.PrivateKeySizeAnnotationKey, v, "an ECDSA key size: 256, 384 or 521")
		default:
			key().Size = size
		}
	}
	if v, ok := annotations[cmapi.PrivateKeyRotationPolicyAnnotationKey]; ok {
		switch p := cmapi.PrivateKeyRotationPolicy(v); p {
		case cmapi.RotationPolicyAlways, cmapi.RotationPolicyNever:
			key().RotationPolicy = p
		default:
			bad(cmapi.PrivateKeyRotationPolicyAnnotationKey, v, "Always or Never")
		}
	}
	return errors.Join(errs...)
}
