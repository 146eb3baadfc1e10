package shim

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/istio-acme/istio-acme-issuer/internal/kubeutil"
)

// +kubebuilder:rbac:groups=cert-manager.io,resources=certificates,verbs=get;list;watch;create;update;patch;delete,namespace=gateway-shim

const (
	// LabelGateway marks the Certificates this controller keeps for a
	// Gateway, with kubeutil.LabelKey of the Gateway.
	LabelGateway = "istio-acme.io/gateway"
	// AnnotationGateway names that Gateway (namespace/name) for humans and
	// for mapping a Certificate back to it.
	AnnotationGateway = "istio-acme.io/gateway"
)

// GatewayReconciler keeps a cert-manager Certificate for every HTTPS server
// of each Istio Gateway annotated with an issuer, where Istio reads the
// server's credentialName, and removes them when the annotation, the server
// or the Gateway goes. It never changes a Certificate it did not create.
type GatewayReconciler struct {
	Client client.Client
	// APIReader reads the gateway pods and a Certificate of someone else's
	// (the cache holds only ours).
	APIReader client.Reader
	Events    events.EventRecorder
	// Namespaces, when not empty, are the only namespaces whose Gateways
	// get Certificates.
	Namespaces []string
}

// CertificateCacheOptions caches only the Certificates this controller
// keeps for Gateways, not every Certificate in the cluster.
func CertificateCacheOptions() (map[client.Object]cache.ByObject, error) {
	req, err := labels.NewRequirement(LabelGateway, selection.Exists, nil)
	if err != nil {
		return nil, err
	}
	return map[client.Object]cache.ByObject{&cmapi.Certificate{}: {Label: labels.NewSelector().Add(*req)}}, nil
}

// SetupWithManager registers the reconciler.
func (r *GatewayReconciler) SetupWithManager(mgr manager.Manager) error {
	inScope := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return len(r.Namespaces) == 0 || slices.Contains(r.Namespaces, o.GetNamespace())
	})
	// Most Gateways ask for nothing: only one that is or was annotated is
	// worth a reconcile (a Certificate of a Gateway deleted while the
	// controller was down comes back through the Certificate watch).
	annotated := predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool { return Annotated(e.Object.GetAnnotations()) },
		UpdateFunc: func(e event.UpdateEvent) bool {
			return Annotated(e.ObjectOld.GetAnnotations()) || Annotated(e.ObjectNew.GetAnnotations())
		},
		DeleteFunc:  func(e event.DeleteEvent) bool { return Annotated(e.Object.GetAnnotations()) },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
	// A Certificate of ours that is changed or deleted wakes its Gateway,
	// which puts it back; one whose Gateway is gone is removed.
	byAnnotation := kubeutil.EnqueueAnnotated(AnnotationGateway)
	return builder.ControllerManagedBy(mgr).
		For(&istionet.Gateway{}, builder.WithPredicates(inScope, annotated)).
		Watches(&cmapi.Certificate{}, byAnnotation, builder.WithPredicates(predicate.Or(
			// Not cert-manager's status writes: those change nothing here.
			predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Named("gateway-certificates").
		WithOptions(controller.Options{MaxConcurrentReconciles: 2}).
		Complete(r)
}

// Reconcile makes the Gateway's Certificates match its HTTPS servers and
// annotations.
func (r *GatewayReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	gw := &istionet.Gateway{}
	err := r.Client.Get(ctx, req.NamespacedName, gw)
	if apierrors.IsNotFound(err) {
		// Certificates in the Gateway's namespace go with it through their
		// ownerReference; those elsewhere go here.
		return reconcile.Result{}, r.removeUnwanted(ctx, req.NamespacedName, nil, nil)
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	if len(r.Namespaces) > 0 && !slices.Contains(r.Namespaces, gw.Namespace) {
		// Outside the namespaces served now (say, after the flag changed):
		// what was created earlier is left as it is.
		return reconcile.Result{}, nil
	}
	if !gw.DeletionTimestamp.IsZero() || !Annotated(gw.Annotations) {
		return reconcile.Result{}, r.removeUnwanted(ctx, req.NamespacedName, gw, nil)
	}

	podNamespace, noNamespace, err := PodNamespace(ctx, r.APIReader, gw)
	if err != nil {
		return reconcile.Result{}, err
	}
	desired, err := DesiredCertificates(gw, podNamespace, noNamespace)
	if err != nil {
		r.Events.Eventf(gw, nil, corev1.EventTypeWarning, "BadAnnotation", "Certificates", "%v; no Certificate is changed until this is fixed", err)
		return reconcile.Result{}, nil
	}
	for _, why := range desired.Skipped {
		r.Events.Eventf(gw, nil, corev1.EventTypeWarning, "ServerSkipped", "Certificates", "%s", why)
	}
	var kept []*cmapi.Certificate
	for _, want := range desired.Certificates {
		ok, err := r.ensure(ctx, gw, want)
		if err != nil {
			return reconcile.Result{}, err
		}
		if ok {
			kept = append(kept, want)
		}
	}
	if err := r.removeUnwanted(ctx, req.NamespacedName, gw, kept); err != nil {
		return reconcile.Result{}, err
	}
	if podNamespace == "" && len(desired.Skipped) > 0 {
		// The gateway pods may appear: look again, gently.
		return reconcile.Result{RequeueAfter: time.Minute}, nil
	}
	return reconcile.Result{}, nil
}

// PodNamespace finds the namespace of the pods the Gateway selects, where
// Istio reads credentialName; when there is not exactly one, it returns ""
// and what to do.
func PodNamespace(ctx context.Context, pods client.Reader, gw *istionet.Gateway) (string, string, error) {
	var list metav1.PartialObjectMetadataList
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	sel := labels.FormatLabels(gw.Spec.Selector)
	if err := pods.List(ctx, &list, client.MatchingLabels(gw.Spec.Selector)); err != nil {
		return "", "", fmt.Errorf("listing the pods of Gateway %s/%s (selector %s): %w", gw.Namespace, gw.Name, sel, err)
	}
	namespaces := map[string]bool{}
	for _, p := range list.Items {
		namespaces[p.Namespace] = true
	}
	switch len(namespaces) {
	case 1:
		for ns := range namespaces {
			return ns, "", nil
		}
	case 0:
		return "", fmt.Sprintf("no pod has the Gateway's selector labels %s, so where Istio will read it is not known: start the gateway, fix spec.selector, or write credentialName as %s/name to keep the Secret in the Gateway's namespace", sel, gw.Namespace), nil
	}
	return "", fmt.Sprintf("the Gateway's selector %s matches gateway pods in several namespaces (%s), and each reads credentialName from its own: narrow spec.selector to one gateway workload, or write credentialName as %s/name to keep the Secret in the Gateway's namespace",
		sel, strings.Join(slices.Sorted(maps.Keys(namespaces)), ", "), gw.Namespace), nil
}

// ensure creates or updates one desired Certificate and reports whether it
// is ours to keep; someone else's Certificate of that name is left alone.
func (r *GatewayReconciler) ensure(ctx context.Context, gw *istionet.Gateway, want *cmapi.Certificate) (bool, error) {
	ref := gw.Namespace + "/" + gw.Name
	want.Labels = map[string]string{LabelGateway: kubeutil.LabelKey(gw.Namespace, gw.Name)}
	if want.Annotations == nil {
		want.Annotations = map[string]string{}
	}
	want.Annotations[AnnotationGateway] = ref
	if want.Namespace == gw.Namespace {
		want.OwnerReferences = []metav1.OwnerReference{{
			APIVersion: istionet.SchemeGroupVersion.String(), Kind: "Gateway", Name: gw.Name, UID: gw.UID, Controller: ptr.To(true),
		}}
	}
	// The cache holds only Certificates kept for Gateways; one it lacks may
	// still be someone else's.
	existing := &cmapi.Certificate{}
	err := r.Client.Get(ctx, client.ObjectKeyFromObject(want), existing)
	if apierrors.IsNotFound(err) {
		err = r.APIReader.Get(ctx, client.ObjectKeyFromObject(want), existing)
	}
	switch {
	case apierrors.IsNotFound(err):
		if why, err := r.secretTaken(ctx, want); err != nil || why != "" {
			if err != nil {
				return false, err
			}
			r.Events.Eventf(gw, nil, corev1.EventTypeWarning, "SecretNotAdopted", "Certificates", "%s", why)
			return false, nil
		}
		if err := r.Client.Create(ctx, want); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return false, err // created meanwhile: look again
			}
			r.Events.Eventf(gw, nil, corev1.EventTypeWarning, "CertificateFailed", "Certificates", "creating Certificate %s/%s: %v", want.Namespace, want.Name, err)
			return false, err
		}
		msg := fmt.Sprintf("created Certificate %s/%s for %s", want.Namespace, want.Name, strings.Join(want.Spec.DNSNames, ", "))
		if want.Namespace != gw.Namespace {
			msg += fmt.Sprintf(" in the gateway pods' namespace %s, where Istio reads credentialName; it is removed with this Gateway", want.Namespace)
		}
		r.Events.Eventf(gw, nil, corev1.EventTypeNormal, "CertificateCreated", "Certificates", "%s", msg)
		return true, nil
	case err != nil:
		return false, fmt.Errorf("reading Certificate %s/%s: %w", want.Namespace, want.Name, err)
	}
	if existing.Annotations[AnnotationGateway] != ref || existing.Labels[LabelGateway] != want.Labels[LabelGateway] {
		owner := "it was not created for this Gateway"
		if other := existing.Annotations[AnnotationGateway]; other != "" {
			owner = "it is kept for Gateway " + other + ", whose server names the same Secret"
		}
		r.Events.Eventf(gw, nil, corev1.EventTypeWarning, "CertificateLeftAlone", "Certificates",
			"Certificate %s/%s exists and %s, so it is left alone; Istio serves whatever it issues into Secret %s", existing.Namespace, existing.Name, owner, want.Spec.SecretName)
		return false, nil
	}
	temporary := want.Annotations[cmapi.IssueTemporaryCertificateAnnotation]
	if equality.Semantic.DeepEqual(existing.Spec, want.Spec) && equality.Semantic.DeepEqual(existing.OwnerReferences, want.OwnerReferences) &&
		existing.Annotations[cmapi.IssueTemporaryCertificateAnnotation] == temporary {
		return true, nil
	}
	existing.Spec = want.Spec
	existing.OwnerReferences = want.OwnerReferences
	if temporary != "" {
		existing.Annotations[cmapi.IssueTemporaryCertificateAnnotation] = temporary
	} else {
		delete(existing.Annotations, cmapi.IssueTemporaryCertificateAnnotation)
	}
	if err := r.Client.Update(ctx, existing); err != nil {
		return false, err
	}
	r.Events.Eventf(gw, nil, corev1.EventTypeNormal, "CertificateUpdated", "Certificates", "updated Certificate %s/%s: %s", existing.Namespace, existing.Name, strings.Join(want.Spec.DNSNames, ", "))
	return true, nil
}

// secretTaken says why the Certificate must not be created: its Secret
// exists and was not written for a Certificate of that name (cert-manager
// would overwrite someone's certificate with the Gateway author's), or the
// controller cannot tell. Empty when the Secret is free.
func (r *GatewayReconciler) secretTaken(ctx context.Context, want *cmapi.Certificate) (string, error) {
	sec := &metav1.PartialObjectMetadata{}
	sec.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: want.Namespace, Name: want.Spec.SecretName}, sec)
	switch {
	case apierrors.IsNotFound(err):
		return "", nil
	case apierrors.IsForbidden(err):
		return fmt.Sprintf("Certificate %s/%s is not created: whether Secret %s/%s already holds someone's certificate cannot be told, since the controller may not read Secrets in %s (with the Helm chart, add it to rbac.temporaryHTTPSNamespaces)",
			want.Namespace, want.Name, want.Namespace, want.Spec.SecretName, want.Namespace), nil
	case err != nil:
		return "", fmt.Errorf("reading Secret %s/%s: %w", want.Namespace, want.Spec.SecretName, err)
	}
	if sec.Annotations[cmapi.CertificateNameKey] == want.Name {
		return "", nil // written for a Certificate of this name: ours before
	}
	return fmt.Sprintf("Certificate %s/%s is not created: Secret %s/%s exists and no Certificate %s manages it, so cert-manager would overwrite it with this Gateway's certificate; name another Secret in credentialName, or delete that Secret if it is stale",
		want.Namespace, want.Name, want.Namespace, want.Spec.SecretName, want.Name), nil
}

// removeUnwanted deletes this Gateway's Certificates that are not in keep.
// gw is nil when the Gateway is gone.
func (r *GatewayReconciler) removeUnwanted(ctx context.Context, key types.NamespacedName, gw *istionet.Gateway, keep []*cmapi.Certificate) error {
	var list cmapi.CertificateList
	if err := r.Client.List(ctx, &list, client.MatchingLabels{LabelGateway: kubeutil.LabelKey(key.Namespace, key.Name)}); err != nil {
		return fmt.Errorf("listing the Certificates of Gateway %s: %w", key, err)
	}
	for i := range list.Items {
		crt := &list.Items[i]
		if crt.Annotations[AnnotationGateway] != key.String() || slices.ContainsFunc(keep, func(k *cmapi.Certificate) bool {
			return k.Namespace == crt.Namespace && k.Name == crt.Name
		}) {
			continue
		}
		if err := r.Client.Delete(ctx, crt, client.Preconditions{UID: &crt.UID}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting Certificate %s/%s of Gateway %s: %w", crt.Namespace, crt.Name, key, err)
		}
		log.FromContext(ctx).Info("deleted a Certificate the Gateway no longer asks for", "certificate", crt.Namespace+"/"+crt.Name)
		if gw != nil {
			r.Events.Eventf(gw, nil, corev1.EventTypeNormal, "CertificateDeleted", "Certificates", "deleted Certificate %s/%s, which no server of this Gateway asks for now (its Secret stays)", crt.Namespace, crt.Name)
		}
	}
	return nil
}
