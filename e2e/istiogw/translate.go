package istiogw

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	"istio.io/istio/pilot/pkg/features"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/pkg/simulation"
	"istio.io/istio/pilot/test/xds"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/mesh"
	"istio.io/istio/pkg/config/schema/gvk"
	"istio.io/istio/pkg/kube/krt"
	istiolog "istio.io/istio/pkg/log"
	proxymodel "istio.io/istio/pkg/model"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/istio-acme/istio-acme-issuer/internal/istiomodel"
)

// Translation is Istio's own translation of Gateways, VirtualServices and
// Services into the Envoy configuration of one gateway workload, ready for
// Istio's request simulation. Close releases the fake discovery server.
type Translation struct {
	Sim    *simulation.Simulation
	failer *failer
}

// Close releases what the translation holds.
func (tr *Translation) Close() {
	tr.failer.cleanup()
	releaseDebugCollections()
}

// istiod's fake discovery server registers every krt collection it builds
// with the process-wide krt.GlobalDebugHandler, which never forgets one: a
// test that translates thousands of times would keep every translation in
// memory (about 6 MB each). Translations are built holding debugState for
// reading; releaseDebugCollections swaps in an empty handler holding it for
// writing, so no translation reads the global while it changes, and skips
// the swap rather than wait while one is being built (a later Close does
// it). Collections built earlier keep the handler they were built with,
// and are freed with it once their translations are closed.
var debugState sync.RWMutex

func releaseDebugCollections() {
	if !debugState.TryLock() {
		return
	}
	defer debugState.Unlock()
	krt.GlobalDebugHandler = new(krt.DebugHandler)
}

var quietIstio sync.Once

// Translate runs istiod's config translation (its fake discovery server)
// for the gateway pods with labels in namespace, with istiod's default
// settings.
func Translate(t *testing.T, labels map[string]string, namespace string, gateways []*istionet.Gateway, virtualServices []*istionet.VirtualService, services []*corev1.Service, podPorts ...corev1.ContainerPort) (*Translation, error) {
	return TranslateMesh(t, istiomodel.Mesh{}, labels, namespace, gateways, virtualServices, services, podPorts...)
}

// scope holds istiod's process-wide PILOT_SCOPE_GATEWAY_TO_NAMESPACE for
// the translations running: one that needs the other value waits until
// they are done.
var scope = struct {
	mu     sync.Mutex
	cond   *sync.Cond
	value  bool
	active int
}{}

func init() { scope.cond = sync.NewCond(&scope.mu) }

func enterScope(scoped bool) (leave func()) {
	scope.mu.Lock()
	defer scope.mu.Unlock()
	for scope.active > 0 && scope.value != scoped {
		scope.cond.Wait()
	}
	scope.value, features.ScopeGatewayToNamespace = scoped, scoped
	scope.active++
	return func() {
		scope.mu.Lock()
		defer scope.mu.Unlock()
		if scope.active--; scope.active == 0 {
			scope.cond.Broadcast()
		}
	}
}

// TranslateMesh is Translate with istiod's settings: the mesh
// configuration's defaultVirtualServiceExportTo and
// PILOT_SCOPE_GATEWAY_TO_NAMESPACE.
func TranslateMesh(t *testing.T, settings istiomodel.Mesh, labels map[string]string, namespace string, gateways []*istionet.Gateway, virtualServices []*istionet.VirtualService, services []*corev1.Service, podPorts ...corev1.ContainerPort) (tr *Translation, err error) {
	quietIstio.Do(func() {
		// Istio's packages log to stdout at info level.
		for _, scope := range istiolog.Scopes() {
			scope.SetOutputLevel(istiolog.NoneLevel)
		}
	})
	// Envoy refuses a route configuration with an invalid regex (RE2, as
	// Go's) and keeps serving its previous routes. The simulation would
	// fail the test instead, so such a configuration is reported as a
	// translation error, which this gateway answers with 500 for every
	// request: either way nothing of the new configuration is served.
	for _, vs := range virtualServices {
		if err := validRegexes(vs); err != nil {
			return nil, err
		}
	}
	var configs []config.Config
	for _, gw := range gateways {
		configs = append(configs, toConfig(gvk.Gateway, gw.Name, gw.Namespace, gw.CreationTimestamp.Time, gw.ResourceVersion, gw.Labels, &gw.Spec))
	}
	for _, vs := range virtualServices {
		configs = append(configs, toConfig(gvk.VirtualService, vs.Name, vs.Namespace, vs.CreationTimestamp.Time, vs.ResourceVersion, vs.Labels, &vs.Spec))
	}
	var objects []runtime.Object
	for _, s := range services {
		objects = append(objects, s)
	}
	f := &failer{t: t}
	defer func() {
		if r := recover(); r != nil {
			f.cleanup()
			tr, err = nil, fmt.Errorf("istio config translation failed: %v (%s)", r, strings.Join(f.errors, "; "))
		}
	}()
	leave := enterScope(settings.ScopeGatewayToNamespace)
	defer leave()
	meshConfig := mesh.DefaultMeshConfig()
	if len(settings.DefaultVirtualServiceExportTo) > 0 {
		meshConfig.DefaultVirtualServiceExportTo = settings.DefaultVirtualServiceExportTo
	}
	debugState.RLock()
	defer debugState.RUnlock()
	s := xds.NewFakeDiscoveryServer(f, xds.FakeOptions{Configs: configs, KubernetesObjects: objects, MeshConfig: meshConfig})
	proxy := s.SetupProxy(&model.Proxy{
		Type:            model.Router,
		Labels:          labels,
		ConfigNamespace: namespace,
		Metadata:        &model.NodeMetadata{Labels: labels, Namespace: namespace, PodPorts: toPodPorts(podPorts)},
	})
	return &Translation{Sim: simulation.NewSimulation(t, s, proxy), failer: f}, nil
}

func toConfig(kind config.GroupVersionKind, name, ns string, created time.Time, rv string, labels map[string]string, spec config.Spec) config.Config {
	return config.Config{
		Meta: config.Meta{
			GroupVersionKind:  kind,
			Name:              name,
			Namespace:         ns,
			Domain:            "cluster.local",
			Labels:            labels,
			ResourceVersion:   rv,
			CreationTimestamp: created,
		},
		Spec: spec,
	}
}

// failer is the test.Failer of one fake discovery server: its cleanups run
// when the server is replaced, and a fatal error panics, to be recovered by
// the request that built it, instead of ending the test from a server
// goroutine.
type failer struct {
	t        *testing.T
	mu       sync.Mutex
	cleanups []func()
	errors   []string
}

func (f *failer) Fail()    { f.FailNow() }
func (f *failer) FailNow() { panic("fatal error in the fake discovery server") }
func (f *failer) Helper()  {}
func (f *failer) TempDir() string {
	return f.t.TempDir()
}
func (f *failer) Fatal(args ...any) {
	f.record(fmt.Sprint(args...))
	f.FailNow()
}
func (f *failer) Fatalf(format string, args ...any) {
	f.record(fmt.Sprintf(format, args...))
	f.FailNow()
}
func (f *failer) Log(args ...any)                 {}
func (f *failer) Logf(format string, args ...any) {}
func (f *failer) Skip(args ...any)                { f.Fatal(append([]any{"skip: "}, args...)...) }
func (f *failer) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

func (f *failer) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, s)
}

func (f *failer) cleanup() {
	f.mu.Lock()
	fns := f.cleanups
	f.cleanups = nil
	f.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// validRegexes checks the regex matches of a VirtualService's HTTP routes.
func validRegexes(vs *istionet.VirtualService) error {
	for i, r := range vs.Spec.Http {
		for j, m := range r.Match {
			for field, sm := range map[string]*istioapi.StringMatch{"uri": m.Uri, "authority": m.Authority, "scheme": m.Scheme, "method": m.Method} {
				if re := sm.GetRegex(); re != "" {
					if _, err := regexp.Compile(re); err != nil {
						return fmt.Errorf("VirtualService %s/%s http[%d].match[%d].%s: Envoy rejects the route configuration: %v", vs.Namespace, vs.Name, i, j, field, err)
					}
				}
			}
		}
	}
	return nil
}

// toPodPorts is the gateway pod's container ports as the proxy reports
// them to istiod, which resolves Services' named target ports with them.
func toPodPorts(ports []corev1.ContainerPort) proxymodel.PodPortList {
	var out proxymodel.PodPortList
	for _, p := range ports {
		out = append(out, proxymodel.PodPort{Name: p.Name, ContainerPort: int(p.ContainerPort), Protocol: string(p.Protocol)})
	}
	return out
}
