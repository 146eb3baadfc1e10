package shim

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Requester tells, for a CertificateRequest, the namespace it asks for: a
// request of a Certificate this shim keeps in the gateway pods' namespace
// asks for the Gateway's namespace, whose author wrote the hosts; any
// other request asks for its own namespace. A claim is believed only when
// it can be checked: the Certificate carries the shim's label and names a
// Gateway that exists, is annotated, selects pods in the Certificate's
// namespace, and asks for a Certificate of exactly that name there.
// Whoever may write Certificates elsewhere cannot borrow a Gateway's
// namespace.
type Requester struct {
	// Client reads Certificates (the shim's, cached by label) and Gateways.
	Client client.Reader
	// Pods lists the gateway pods (metadata), as the shim does.
	Pods client.Reader

	// podNamespaces remembers, by Gateway selector, where its pods were
	// found a moment ago: the signer asks on every pass and the token
	// server on every request, and pods are not cached.
	mu            sync.Mutex
	podNamespaces map[string]podNamespace
}

type podNamespace struct {
	namespace string
	// problem says why no one namespace was found (no pods, or pods in
	// several namespaces); kept too, so the reason is not lost.
	problem string
	at      time.Time
}

// podNamespaceTTL bounds how stale a remembered pods' namespace may be.
const podNamespaceTTL = 10 * time.Second

// RequesterReads returns the kinds Of reads from Client (it reads pods
// from Pods), for solver.NewTokenPathReader: the token server asks it on
// every answer.
func RequesterReads() []client.Object {
	return []client.Object{&cmapi.Certificate{}, &istionet.Gateway{}}
}

// podNamespaceOf is PodNamespace, remembered for podNamespaceTTL.
func (r *Requester) podNamespaceOf(ctx context.Context, gw *istionet.Gateway) (namespace, problem string, err error) {
	key := labels.FormatLabels(gw.Spec.Selector)
	r.mu.Lock()
	e, ok := r.podNamespaces[key]
	r.mu.Unlock()
	if ok && time.Since(e.at) < podNamespaceTTL {
		return e.namespace, e.problem, nil
	}
	ns, problem, err := PodNamespace(ctx, r.Pods, gw)
	if err != nil {
		return "", "", err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.podNamespaces == nil {
		r.podNamespaces = map[string]podNamespace{}
	}
	for k, old := range r.podNamespaces {
		if time.Since(old.at) >= podNamespaceTTL {
			delete(r.podNamespaces, k)
		}
	}
	r.podNamespaces[key] = podNamespace{namespace: ns, problem: problem, at: time.Now()}
	return ns, problem, nil
}

// Of returns the namespace the request asks for; why says why a claimed
// Gateway's namespace was not believed, or is empty.
func (r *Requester) Of(ctx context.Context, namespace string, owners []metav1.OwnerReference) (requester, why string, err error) {
	var crtName string
	for _, o := range owners {
		if o.Controller != nil && *o.Controller && o.Kind == cmapi.CertificateKind && strings.HasPrefix(o.APIVersion, cmapi.SchemeGroupVersion.Group+"/") {
			crtName = o.Name
		}
	}
	if crtName == "" {
		return namespace, "", nil
	}
	crt := &cmapi.Certificate{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: crtName}, crt); err != nil {
		if apierrors.IsNotFound(err) {
			return namespace, "", nil // not one of the shim's: the cache holds only those
		}
		return "", "", fmt.Errorf("reading Certificate %s/%s: %w", namespace, crtName, err)
	}
	ref := crt.Annotations[AnnotationGateway]
	gwNS, gwName, ok := strings.Cut(ref, "/")
	if _, labelled := crt.Labels[LabelGateway]; !labelled || !ok || gwNS == namespace {
		return namespace, "", nil
	}
	gw := &istionet.Gateway{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: gwNS, Name: gwName}, gw); err != nil {
		if apierrors.IsNotFound(err) {
			return namespace, fmt.Sprintf("Certificate %s/%s names Gateway %s, which does not exist", namespace, crtName, ref), nil
		}
		return "", "", fmt.Errorf("reading Gateway %s: %w", ref, err)
	}
	if !Annotated(gw.Annotations) {
		return namespace, fmt.Sprintf("Certificate %s/%s names Gateway %s, which asks for no Certificates", namespace, crtName, ref), nil
	}
	pods, problem, err := r.podNamespaceOf(ctx, gw)
	if err != nil {
		return "", "", err
	}
	if problem != "" {
		return namespace, fmt.Sprintf("Certificate %s/%s names Gateway %s: %s", namespace, crtName, ref, problem), nil
	}
	if pods != namespace {
		return namespace, fmt.Sprintf("Certificate %s/%s names Gateway %s, whose gateway pods are not in %s", namespace, crtName, ref, namespace), nil
	}
	desired, err := DesiredCertificates(gw, pods, "")
	if err != nil {
		return namespace, fmt.Sprintf("Certificate %s/%s names Gateway %s: %v", namespace, crtName, ref, err), nil
	}
	for _, c := range desired.Certificates {
		if c.Namespace == namespace && c.Name == crtName {
			return gwNS, "", nil
		}
	}
	return namespace, fmt.Sprintf("Certificate %s/%s names Gateway %s, which asks for no Certificate of that name", namespace, crtName, ref), nil
}
