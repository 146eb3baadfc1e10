package solver

import (
	"google.golang.org/protobuf/proto"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/internal/kubeutil"
)

// A challenge's VirtualServices live in the requester's namespace, written
// as that namespace would write them, so they may be in any namespace.
// Every VirtualService is read, since the planner reads the users' ones.
//
// +kubebuilder:rbac:groups=networking.istio.io,resources=virtualservices,verbs=get;list;watch
// +kubebuilder:rbac:groups=networking.istio.io,resources=virtualservices,verbs=create;update;patch;delete

var virtualServiceRoutes = &routeKind{
	kind:       "VirtualService",
	apiVersion: istionet.SchemeGroupVersion.String(),
	newObject:  func() client.Object { return &istionet.VirtualService{} },
	newList:    func() client.ObjectList { return &istionet.VirtualServiceList{} },
	namespace:  RequesterNamespace,
	sameSpec: func(want, existing client.Object) bool {
		return proto.Equal(&want.(*istionet.VirtualService).Spec, &existing.(*istionet.VirtualService).Spec)
	},
	trimStatus:    func(o client.Object) { o.(*istionet.VirtualService).Status.Reset() },
	built:         func(r Routes) []client.Object { return asObjects(r.VirtualServices) },
	forbiddenHint: kubeutil.RoutesHint,
}
