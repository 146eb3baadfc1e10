package solver

import (
	"google.golang.org/protobuf/proto"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/kubeutil"
)

// Gateways of our own, for a host no server of the users' serves (or our
// temporary HTTPS server), live in the issuer's gateway namespace: the
// chart grants writes there only. Every Gateway is read, since the planner
// reads the users' ones.
//
// +kubebuilder:rbac:groups=networking.istio.io,resources=gateways,verbs=get;list;watch
// +kubebuilder:rbac:groups=networking.istio.io,resources=gateways,verbs=create;update;patch;delete;deletecollection,namespace=challenge-routes

var gatewayRoutes = &routeKind{
	kind:       "Gateway",
	apiVersion: istionet.SchemeGroupVersion.String(),
	newObject:  func() client.Object { return &istionet.Gateway{} },
	newList:    func() client.ObjectList { return &istionet.GatewayList{} },
	namespace:  func(ch *v1alpha1.ACMEChallenge) string { return ch.Spec.Solver.GatewayNamespace },
	sameSpec: func(want, existing client.Object) bool {
		return proto.Equal(&want.(*istionet.Gateway).Spec, &existing.(*istionet.Gateway).Spec)
	},
	trimStatus:    func(o client.Object) { o.(*istionet.Gateway).Status.Reset() },
	built:         func(r Routes) []client.Object { return asObjects(r.Gateways) },
	forbiddenHint: kubeutil.RoutesHint,
}
