package issuer

import (
	"context"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	issuerapi "github.com/cert-manager/issuer-lib/api/v1alpha1"
	"github.com/cert-manager/issuer-lib/controllers"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/solver"
)

// FieldOwner is the field manager of what issuer-lib writes for us.
const FieldOwner = "istio-acme-issuer"

// +kubebuilder:rbac:groups=istio-acme.io,resources=acmeissuers;acmeclusterissuers,verbs=get;list;watch
// +kubebuilder:rbac:groups=istio-acme.io,resources=acmeissuers/status;acmeclusterissuers/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=cert-manager.io,resources=certificaterequests,verbs=get;list;watch
// +kubebuilder:rbac:groups=cert-manager.io,resources=certificaterequests/status,verbs=get;patch;update

// SetupOptions wire the signer into a manager.
type SetupOptions struct {
	Signer *Signer
	// MaxRetryDuration is how long a request is retried after a
	// non-permanent error before it is failed.
	MaxRetryDuration time.Duration
	// Workers is the number of requests worked on at once.
	Workers int
}

// SetupWithManager registers issuer-lib's issuer and CertificateRequest
// controllers with our Sign and Check, and makes a change to a request's
// challenges wake up the request at once instead of at its next poll.
func SetupWithManager(ctx context.Context, mgr manager.Manager, o SetupOptions) error {
	crGVK := cmapi.SchemeGroupVersion.WithKind(cmapi.CertificateRequestKind)
	progress := newProgressMemo()
	return (&controllers.CombinedController{
		IssuerTypes:                    []issuerapi.Issuer{&v1alpha1.ACMEIssuer{}},
		ClusterIssuerTypes:             []issuerapi.Issuer{&v1alpha1.ACMEClusterIssuer{}},
		FieldOwner:                     FieldOwner,
		MaxRetryDuration:               o.MaxRetryDuration,
		Sign:                           o.Signer.Sign,
		Check:                          o.Signer.Check,
		EventRecorder:                  requestEvents{EventRecorder: o.Signer.events},
		DisableKubernetesCSRController: true,
		ControllerOptions: controller.Options{
			MaxConcurrentReconciles: o.Workers,
			RateLimiter:             retryBackoff(),
		},
		PreSetupWithManager: func(_ context.Context, gvk schema.GroupVersionKind, mgr manager.Manager, b *builder.Builder) error {
			if gvk != crGVK {
				return nil
			}
			b.Watches(&v1alpha1.ACMEChallenge{}, handler.EnqueueRequestsFromMapFunc(requestOfChallenge))
			// A request the tenancy rule refuses is decided again when
			// what the rule reads changes.
			refused := handler.EnqueueRequestsFromMapFunc(o.Signer.refused.Requests)
			b.WatchesRawSource(solver.UsersGatewaysSource(mgr, refused))
			b.Watches(&v1alpha1.HostnameGrant{}, refused)
			// A progress message held back is written once it lasted,
			// also by a request with no pass of its own coming.
			b.WatchesRawSource(source.Channel(progress.wake, &handler.EnqueueRequestForObject{}))
			// A challenge presented in memory wakes its request at once.
			if p := o.Signer.presentations; p != nil {
				b.WatchesRawSource(source.Channel(p.Wake(), handler.EnqueueRequestsFromMapFunc(requestOfChallenge)))
			}
			return nil
		},
	}).SetupWithManager(ctx, requestManager{Manager: mgr, progress: progress, clock: o.Signer.clock})
}

// retryBackoff spaces the retries of a request (or issuer) after an error:
// 500 ms, doubling up to 5 minutes. controller-runtime's default starts at
// 5 ms, which would send a failing CA a dozen requests in the first second.
// Waits the CA asks for (Retry-After) and polling are requeued separately.
func retryBackoff() workqueue.TypedRateLimiter[reconcile.Request] {
	return workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](500*time.Millisecond, 5*time.Minute)
}

// requestOfChallenge maps a challenge to its CertificateRequest: the order,
// and so the challenge's spec.order, is named after the request. A
// challenge answered for a cert-manager Challenge has no order.
func requestOfChallenge(_ context.Context, obj client.Object) []reconcile.Request {
	ch, ok := obj.(*v1alpha1.ACMEChallenge)
	if !ok || ch.Spec.Order == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ch.Namespace, Name: ch.Spec.Order}}}
}
