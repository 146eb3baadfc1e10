package issuer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cert-manager/cert-manager/third_party/forked/acme"
	"github.com/cert-manager/issuer-lib/controllers/signer"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/kubeutil"
)

const (
	defaultAccountKeyKey = "tls.key"
	defaultEABKeyKey     = "secret"

	// LabelAccountKey marks the account key Secrets the controller
	// generated. They carry no label of the challenge objects, so that a
	// cleanup of those by label never deletes an ACME account.
	LabelAccountKey = "istio-acme.io/account-key"

	// caRequestTimeout bounds every call to the CA, so a slow CA cannot hold
	// a worker.
	caRequestTimeout = 15 * time.Second
)

// account is a ready-to-use ACME client for one issuer.
type account struct {
	client *acme.Client
	uri    string
}

// accounts builds ACME clients for issuers and keeps them between calls, so
// that an order in flight costs only the CA round trips it needs.
type accounts struct {
	// secrets reads and writes Secrets. It should not be backed by an
	// informer on all Secrets: only account keys are read, and rarely.
	secrets client.Client
	// clusterResourceNamespace holds the Secrets of ACMEClusterIssuers.
	clusterResourceNamespace string
	userAgent                string

	mu    sync.Mutex
	cache map[string]*account // by issuerCacheKey
	// holds keep each account's requests back while the CA asked it to wait.
	holds holds
}

// secretNamespace is where an issuer's Secrets live.
func (a *accounts) secretNamespace(iss v1alpha1.ACMEIssuerObject) string {
	if _, ok := iss.(*v1alpha1.ACMEClusterIssuer); ok {
		return a.clusterResourceNamespace
	}
	return iss.GetNamespace()
}

// issuerCacheKey changes whenever the issuer's spec changes.
func issuerCacheKey(iss v1alpha1.ACMEIssuerObject) string {
	return fmt.Sprintf("%T/%s/%s/%s/%d", iss, iss.GetNamespace(), iss.GetName(), iss.GetUID(), iss.GetGeneration())
}

func (a *accounts) cached(iss v1alpha1.ACMEIssuerObject) *account {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cache[issuerCacheKey(iss)]
}

func (a *accounts) store(iss v1alpha1.ACMEIssuerObject, acct *account) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cache == nil {
		a.cache = map[string]*account{}
	}
	prefix := fmt.Sprintf("%T/%s/%s/", iss, iss.GetNamespace(), iss.GetName())
	for k := range a.cache {
		if strings.HasPrefix(k, prefix) {
			delete(a.cache, k) // an older generation of the same issuer
		}
	}
	a.cache[issuerCacheKey(iss)] = acct
}

// forSigning returns the issuer's account for placing orders. The issuer is
// Ready, so its account was registered by Check; after a restart the client is
// rebuilt from the key and the account URI in the issuer's status, without
// registering again.
func (a *accounts) forSigning(ctx context.Context, iss v1alpha1.ACMEIssuerObject) (*account, error) {
	if acct := a.cached(iss); acct != nil {
		return acct, nil
	}
	st := iss.GetStatus().Account
	if st == nil || st.URI == "" || st.Server != iss.GetSpec().Server {
		return a.register(ctx, iss)
	}
	cl, _, err := a.connect(ctx, iss, false)
	if err != nil {
		return nil, err
	}
	cl.KID = acme.KeyID(st.URI)
	acct := &account{client: cl, uri: st.URI}
	a.store(iss, acct)
	return acct, nil
}

// connect builds a client with the issuer's account key (generated when
// createKey allows and it is missing) and reads the CA's directory.
func (a *accounts) connect(ctx context.Context, iss v1alpha1.ACMEIssuerObject, createKey bool) (*acme.Client, acme.Directory, error) {
	key, err := a.loadKey(ctx, iss, createKey)
	if err != nil {
		return nil, acme.Directory{}, err
	}
	cl, err := a.newClient(iss, key)
	if err != nil {
		return nil, acme.Directory{}, err
	}
	dir, err := discover(ctx, cl)
	return cl, dir, err
}

// register registers the issuer's account, or recovers it when the key is
// already registered, and updates its contact when spec.email changed.
func (a *accounts) register(ctx context.Context, iss v1alpha1.ACMEIssuerObject) (*account, error) {
	spec := iss.GetSpec()
	cl, dir, err := a.connect(ctx, iss, true)
	if err != nil {
		return nil, err
	}
	if spec.Profile != "" {
		if !dir.Profiles.Has(spec.Profile) {
			return nil, signer.PermanentError{Err: fmt.Errorf("spec.profile %q is not offered by the ACME server %s (it offers: %s); set spec.profile to one of them or remove it", spec.Profile, spec.Server, profileList(dir))}
		}
	}

	want := &acme.Account{}
	if spec.Email != "" {
		want.Contact = []string{"mailto:" + spec.Email}
	}
	if eab := spec.ExternalAccountBinding; eab != nil {
		hmacKey, err := a.loadEABKey(ctx, iss, eab)
		if err != nil {
			return nil, err
		}
		want.ExternalAccountBinding = &acme.ExternalAccountBinding{KID: eab.KeyID, Key: hmacKey}
	}

	rctx, cancel := context.WithTimeout(ctx, caRequestTimeout)
	defer cancel()
	got, err := cl.Register(rctx, want, acme.AcceptTOS)
	if errors.Is(err, acme.ErrAccountAlreadyExists) {
		got, err = cl.GetReg(rctx, "")
		if err == nil && !sameContacts(got.Contact, want.Contact) {
			got.Contact = want.Contact
			got, err = cl.UpdateReg(rctx, got)
		}
	}
	if err != nil {
		return nil, describeRegistrationError(spec, err)
	}
	cl.KID = acme.KeyID(got.URI)
	acct := &account{client: cl, uri: got.URI}
	a.store(iss, acct)
	return acct, nil
}

func describeRegistrationError(spec *v1alpha1.ACMEIssuerSpec, err error) error {
	var ae *acme.Error
	if !errors.As(err, &ae) {
		return fmt.Errorf("registering the ACME account at %s: %w", spec.Server, describeTransport(err))
	}
	text := problemText(ae)
	switch ae.ProblemType {
	case problemExternalAccountRequired:
		return fmt.Errorf("the ACME server %s requires external account binding: set spec.externalAccountBinding to the key ID and HMAC key your CA gave you (%s)", spec.Server, text)
	case problemInvalidContact, problemUnsupportedContact:
		return fmt.Errorf("the ACME server rejected spec.email %q: %s; set spec.email to an address the CA accepts", spec.Email, text)
	case problemUnauthorized, problemMalformed:
		if spec.ExternalAccountBinding != nil {
			return fmt.Errorf("the ACME server rejected the external account binding (keyID %q): %s; check spec.externalAccountBinding.keyID and the HMAC key in spec.externalAccountBinding.keySecretRef", spec.ExternalAccountBinding.KeyID, text)
		}
	case problemUserActionRequired:
		return fmt.Errorf("the ACME server requires you to agree to new terms (%s): %s", ae.Instance, text)
	}
	return fmt.Errorf("registering the ACME account at %s: %s", spec.Server, text)
}

func sameContacts(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !strings.EqualFold(a[i], b[i]) {
			return false
		}
	}
	return true
}

func profileList(dir acme.Directory) string {
	if len(dir.Profiles) == 0 {
		return "no profiles"
	}
	names := make([]string, 0, len(dir.Profiles))
	for name := range dir.Profiles {
		names = append(names, string(name))
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

func discover(ctx context.Context, cl *acme.Client) (acme.Directory, error) {
	dctx, cancel := context.WithTimeout(ctx, caRequestTimeout)
	defer cancel()
	dir, err := cl.Discover(dctx)
	if err != nil {
		var ae *acme.Error
		if errors.As(err, &ae) {
			return dir, fmt.Errorf("reading the ACME directory %s: %s; check that spec.server is the directory URL", cl.DirectoryURL, problemText(ae))
		}
		terr := describeTransport(err)
		if terr == err {
			// Not a network or TLS fault: the URL answered, but not as an ACME directory.
			return dir, fmt.Errorf("reading the ACME directory %s: %w; check that spec.server is the ACME directory URL", cl.DirectoryURL, err)
		}
		return dir, fmt.Errorf("reading the ACME directory %s: %w", cl.DirectoryURL, terr)
	}
	if dir.OrderURL == "" || dir.RegURL == "" {
		return dir, fmt.Errorf("%s is not an ACME (RFC 8555) directory: it lists no newOrder or newAccount URL; check spec.server", cl.DirectoryURL)
	}
	return dir, nil
}

func (a *accounts) newClient(iss v1alpha1.ACMEIssuerObject, key crypto.Signer) (*acme.Client, error) {
	spec := iss.GetSpec()
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if len(spec.CABundle) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(spec.CABundle) {
			return nil, signer.PermanentError{Err: errors.New("spec.caBundle holds no PEM certificate; set it to the PEM-encoded certificate of the CA that signed the ACME server's certificate")}
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	// One account is one key at one CA, however the issuers name it.
	ref := spec.PrivateKeySecretRef
	hold := a.holds.of(fmt.Sprintf("%s|%s/%s/%s", spec.Server, a.secretNamespace(iss), ref.Name, accountKeyKey(ref)))
	return &acme.Client{
		Key:          key,
		DirectoryURL: spec.Server,
		UserAgent:    a.userAgent,
		HTTPClient:   &http.Client{Transport: &holdTransport{base: transport, hold: hold}, Timeout: caRequestTimeout},
		RetryBackoff: noRetryExceptBadNonce,
	}, nil
}

// loadKey reads the account key. With create, a missing Secret or key is
// generated and stored; a key that is present is never replaced.
func (a *accounts) loadKey(ctx context.Context, iss v1alpha1.ACMEIssuerObject, create bool) (crypto.Signer, error) {
	ref := iss.GetSpec().PrivateKeySecretRef
	ns := a.secretNamespace(iss)
	dataKey := accountKeyKey(ref)
	where := fmt.Sprintf("key %q of Secret %s/%s (spec.privateKeySecretRef)", dataKey, ns, ref.Name)

	secret := &corev1.Secret{}
	err := a.secrets.Get(ctx, client.ObjectKey{Namespace: ns, Name: ref.Name}, secret)
	switch {
	case apierrors.IsNotFound(err):
		secret = nil
	case err != nil:
		return nil, fmt.Errorf("reading the account key, %s: %w", where, kubeutil.ForbiddenHint(err, kubeutil.SecretsHint))
	}
	if secret != nil {
		if pemBytes, ok := secret.Data[dataKey]; ok {
			key, err := parsePrivateKey(pemBytes)
			if err != nil {
				return nil, fmt.Errorf("the account key, %s, is not a PEM private key (%v); it is left untouched because it identifies the ACME account: fix the Secret, or point spec.privateKeySecretRef at a new Secret to register a new account", where, err)
			}
			if why := accountKeyProblem(key); why != "" {
				return nil, signer.PermanentError{Err: fmt.Errorf("the account key, %s, is %s; ACME CAs accept RSA keys of 2048 bits or more and ECDSA P-256 or P-384 keys: point spec.privateKeySecretRef at a new Secret and the controller generates a P-256 key for a new account", where, why)}
			}
			return key, nil
		}
	}
	if !create {
		return nil, signer.IssuerError{Err: fmt.Errorf("the account key, %s, is missing", where)}
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating an account key: %w", err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding the account key: %w", err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	if secret == nil {
		secret = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ref.Name, Labels: map[string]string{LabelAccountKey: "true"}},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{dataKey: pemBytes},
		}
		// Create fails if another replica created it meanwhile; the retry
		// then reads that key instead of replacing it.
		if err := a.secrets.Create(ctx, secret); err != nil {
			return nil, fmt.Errorf("storing a new account key in %s: %w", where, kubeutil.ForbiddenHint(err, kubeutil.SecretsHint))
		}
		return key, nil
	}
	if secret.Data == nil {
		secret.Data = map[string][]byte{}
	}
	secret.Data[dataKey] = pemBytes
	// Update carries the resourceVersion read above, so a concurrent write
	// makes this fail rather than overwrite a key.
	if err := a.secrets.Update(ctx, secret); err != nil {
		return nil, fmt.Errorf("storing a new account key in %s: %w", where, kubeutil.ForbiddenHint(err, kubeutil.SecretsHint))
	}
	return key, nil
}

func (a *accounts) loadEABKey(ctx context.Context, iss v1alpha1.ACMEIssuerObject, eab *v1alpha1.ExternalAccountBinding) ([]byte, error) {
	ns := a.secretNamespace(iss)
	dataKey := eab.KeySecretRef.Key
	if dataKey == "" {
		dataKey = defaultEABKeyKey
	}
	where := fmt.Sprintf("key %q of Secret %s/%s (spec.externalAccountBinding.keySecretRef)", dataKey, ns, eab.KeySecretRef.Name)
	secret := &corev1.Secret{}
	if err := a.secrets.Get(ctx, client.ObjectKey{Namespace: ns, Name: eab.KeySecretRef.Name}, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("the external account binding key, %s, does not exist: create the Secret with the HMAC key your CA gave you", where)
		}
		return nil, fmt.Errorf("reading the external account binding key, %s: %w", where, kubeutil.ForbiddenHint(err, kubeutil.SecretsHint))
	}
	raw, ok := secret.Data[dataKey]
	if !ok || len(strings.TrimSpace(string(raw))) == 0 {
		return nil, fmt.Errorf("the external account binding key, %s, is missing or empty", where)
	}
	key, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(strings.TrimSpace(string(raw)), "="))
	if err != nil {
		return nil, fmt.Errorf("the external account binding key, %s, is not base64url as the CA issues it: %v", where, err)
	}
	return key, nil
}

// accountKeyKey is the key of the account key's Secret that holds it.
func accountKeyKey(ref v1alpha1.SecretKeySelector) string {
	if ref.Key == "" {
		return defaultAccountKeyKey
	}
	return ref.Key
}

// accountKeyProblem says why a parsed account key would be refused by CAs,
// or returns "".
func accountKeyProblem(key crypto.Signer) string {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < 2048 {
			return fmt.Sprintf("an RSA key of %d bits", bits)
		}
	case *ecdsa.PrivateKey:
		if name := k.Curve.Params().Name; name != "P-256" && name != "P-384" {
			return "an ECDSA key on curve " + name
		}
	default:
		return fmt.Sprintf("a %T", key)
	}
	return ""
}

func parsePrivateKey(pemBytes []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("unsupported key in PEM block %q", block.Type)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", k)
	}
	return s, nil
}
