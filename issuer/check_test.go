package issuer

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cert-manager/issuer-lib/controllers/signer"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
	"github.com/istio-acme/istio-acme-issuer/solver"
)

// These tests run Check against a real API server and a real Pebble.

const eabKeyID = "kid-1"

var eabKey = []byte("a-32-byte-hmac-key-for-the-tests")

func TestCheck(t *testing.T) {
	api := testenv.StartAPIServer(t)
	pebble := testenv.StartPebble(t, testenv.PebbleOptions{DomainBlocklist: []string{"blocked.example"}})
	eabPebble := testenv.StartPebble(t, testenv.PebbleOptions{
		ExternalAccountBindingRequired: true,
		ExternalAccountMACKeys:         map[string]string{eabKeyID: base64.RawURLEncoding.EncodeToString(eabKey)},
	})
	ctx := context.Background()
	const ns = "istio-acme-issuer"
	api.CreateNamespaces(t, ns)
	mustCreate(t, api.Client, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "eab"},
		Data:       map[string][]byte{"secret": []byte(base64.RawURLEncoding.EncodeToString(eabKey))},
	})
	mustCreate(t, api.Client, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "eab-wrong"},
		Data:       map[string][]byte{"secret": []byte(base64.RawURLEncoding.EncodeToString([]byte("another-32-byte-hmac-key-for-tst")))},
	})
	newSigner := func() *Signer {
		return NewSigner(Options{Client: api.Client, Secrets: api.Client, ClusterResourceNamespace: ns, UserAgent: "test"})
	}

	t.Run("registers, records the account and keeps the key", func(t *testing.T) {
		iss := clusterIssuer(t, api.Client, "ok", v1alpha1.ACMEIssuerSpec{Server: pebble.DirectoryURL, CABundle: pebble.ServerCAPEM, Email: "ops@example.org"})
		if err := newSigner().Check(ctx, iss); err != nil {
			t.Fatalf("Check: %v", err)
		}
		got := &v1alpha1.ACMEClusterIssuer{}
		if err := api.Client.Get(ctx, client.ObjectKeyFromObject(iss), got); err != nil {
			t.Fatal(err)
		}
		acct := got.Status.Account
		if acct == nil || !strings.HasPrefix(acct.URI, "https://127.0.0.1") || acct.Server != pebble.DirectoryURL || acct.Email != "ops@example.org" {
			t.Fatalf("status.account = %+v, want Pebble's account URI", acct)
		}
		keyBefore := secretData(t, api.Client, ns, "key-ok", "tls.key")
		if !strings.Contains(string(keyBefore), "PRIVATE KEY") {
			t.Fatalf("no PEM key stored: %q", keyBefore)
		}
		// Labelled as an account key, not as a challenge object: a cleanup
		// of challenge objects by label must not delete the account.
		var keySecret corev1.Secret
		if err := api.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "key-ok"}, &keySecret); err != nil {
			t.Fatal(err)
		}
		if keySecret.Labels[LabelAccountKey] != "true" || keySecret.Labels[solver.LabelManagedBy] != "" {
			t.Errorf("account key Secret labels %v, want %s=true and no %s", keySecret.Labels, LabelAccountKey, solver.LabelManagedBy)
		}

		// A restarted controller (a new Signer) recovers the same account
		// with the same key.
		if err := newSigner().Check(ctx, got); err != nil {
			t.Fatalf("second Check: %v", err)
		}
		again := &v1alpha1.ACMEClusterIssuer{}
		if err := api.Client.Get(ctx, client.ObjectKeyFromObject(iss), again); err != nil {
			t.Fatal(err)
		}
		if again.Status.Account.URI != acct.URI {
			t.Errorf("account changed from %s to %s", acct.URI, again.Status.Account.URI)
		}
		if keyAfter := secretData(t, api.Client, ns, "key-ok", "tls.key"); string(keyAfter) != string(keyBefore) {
			t.Error("the account key was regenerated")
		}
	})

	t.Run("an unparsable key is reported and left untouched", func(t *testing.T) {
		mustCreate(t, api.Client, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "key-broken"}, Data: map[string][]byte{"tls.key": []byte("garbage")}})
		iss := clusterIssuer(t, api.Client, "broken", v1alpha1.ACMEIssuerSpec{Server: pebble.DirectoryURL, CABundle: pebble.ServerCAPEM})
		err := newSigner().Check(ctx, iss)
		wantMessage(t, err, "Secret istio-acme-issuer/key-broken", "not a PEM private key", "spec.privateKeySecretRef")
		if got := secretData(t, api.Client, ns, "key-broken", "tls.key"); string(got) != "garbage" {
			t.Errorf("the broken key was overwritten with %q", got)
		}
	})

	errorCases := []struct {
		name      string
		spec      func() v1alpha1.ACMEIssuerSpec
		want      []string
		permanent bool
	}{
		{
			name: "TLS failure without caBundle",
			spec: func() v1alpha1.ACMEIssuerSpec { return v1alpha1.ACMEIssuerSpec{Server: pebble.DirectoryURL} },
			want: []string{"TLS verification", "spec.caBundle"},
		},
		{
			name: "unreachable directory",
			spec: func() v1alpha1.ACMEIssuerSpec {
				return v1alpha1.ACMEIssuerSpec{Server: fmt.Sprintf("https://127.0.0.1:%d/dir", testenv.FreePort(t))}
			},
			want: []string{"cannot reach the ACME server", "spec.server"},
		},
		{
			name: "not an ACME directory",
			spec: func() v1alpha1.ACMEIssuerSpec {
				return v1alpha1.ACMEIssuerSpec{Server: pebble.ManagementURL + "/roots/0", CABundle: pebble.ServerCAPEM}
			},
			want: []string{"spec.server", "directory"},
		},
		{
			name: "invalid email",
			spec: func() v1alpha1.ACMEIssuerSpec {
				return v1alpha1.ACMEIssuerSpec{Server: pebble.DirectoryURL, CABundle: pebble.ServerCAPEM, Email: "ops@example..org"}
			},
			want: []string{"rejected spec.email", "ops@example..org", "invalidContact"},
		},
		{
			name: "caBundle without a certificate",
			spec: func() v1alpha1.ACMEIssuerSpec {
				return v1alpha1.ACMEIssuerSpec{Server: pebble.DirectoryURL, CABundle: []byte("not pem")}
			},
			want: []string{"spec.caBundle holds no PEM certificate"}, permanent: true,
		},
		{
			name: "profile the CA does not offer",
			spec: func() v1alpha1.ACMEIssuerSpec {
				return v1alpha1.ACMEIssuerSpec{Server: pebble.DirectoryURL, CABundle: pebble.ServerCAPEM, Profile: "tlsserver"}
			},
			want: []string{`spec.profile "tlsserver"`, "shortlived"}, permanent: true,
		},
		{
			name: "EAB required but not configured",
			spec: func() v1alpha1.ACMEIssuerSpec {
				return v1alpha1.ACMEIssuerSpec{Server: eabPebble.DirectoryURL, CABundle: eabPebble.ServerCAPEM}
			},
			want: []string{"requires external account binding", "spec.externalAccountBinding"},
		},
		{
			name: "EAB rejected",
			spec: func() v1alpha1.ACMEIssuerSpec {
				return v1alpha1.ACMEIssuerSpec{Server: eabPebble.DirectoryURL, CABundle: eabPebble.ServerCAPEM,
					ExternalAccountBinding: &v1alpha1.ExternalAccountBinding{KeyID: eabKeyID, KeySecretRef: v1alpha1.SecretKeySelector{Name: "eab-wrong"}}}
			},
			want: []string{"rejected the external account binding", eabKeyID},
		},
		{
			name: "EAB key Secret missing",
			spec: func() v1alpha1.ACMEIssuerSpec {
				return v1alpha1.ACMEIssuerSpec{Server: eabPebble.DirectoryURL, CABundle: eabPebble.ServerCAPEM,
					ExternalAccountBinding: &v1alpha1.ExternalAccountBinding{KeyID: eabKeyID, KeySecretRef: v1alpha1.SecretKeySelector{Name: "nope"}}}
			},
			want: []string{"Secret istio-acme-issuer/nope", "does not exist"},
		},
	}
	for i, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			iss := clusterIssuer(t, api.Client, fmt.Sprintf("bad-%d", i), tc.spec())
			err := newSigner().Check(ctx, iss)
			wantMessage(t, err, tc.want...)
			if got := errors.As(err, &signer.PermanentError{}); got != tc.permanent {
				t.Errorf("permanent = %v, want %v", got, tc.permanent)
			}
		})
	}

	t.Run("EAB accepted", func(t *testing.T) {
		iss := clusterIssuer(t, api.Client, "eab-ok", v1alpha1.ACMEIssuerSpec{Server: eabPebble.DirectoryURL, CABundle: eabPebble.ServerCAPEM,
			ExternalAccountBinding: &v1alpha1.ExternalAccountBinding{KeyID: eabKeyID, KeySecretRef: v1alpha1.SecretKeySelector{Name: "eab"}}})
		if err := newSigner().Check(ctx, iss); err != nil {
			t.Fatalf("Check with a valid EAB: %v", err)
		}
	})
}

func clusterIssuer(t *testing.T, cl client.Client, name string, spec v1alpha1.ACMEIssuerSpec) *v1alpha1.ACMEClusterIssuer {
	t.Helper()
	spec.PrivateKeySecretRef = v1alpha1.SecretKeySelector{Name: "key-" + name}
	iss := &v1alpha1.ACMEClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
	mustCreate(t, cl, iss)
	return iss
}

func mustCreate(t *testing.T, cl client.Client, obj client.Object) {
	t.Helper()
	if err := cl.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

func secretData(t *testing.T, cl client.Client, ns, name, key string) []byte {
	t.Helper()
	s := &corev1.Secret{}
	if err := cl.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		t.Fatalf("reading Secret %s/%s: %v", ns, name, err)
	}
	return s.Data[key]
}

func wantMessage(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one mentioning %q", parts)
	}
	t.Logf("message: %v", err)
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("message %q lacks %q", err.Error(), p)
		}
	}
}
