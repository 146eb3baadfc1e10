// Package testenv starts the real components the tests run against: a
// kube-apiserver with etcd (envtest) holding our, cert-manager's and Istio's
// CRDs, and Pebble as the ACME CA. Every process it starts listens on free
// loopback ports and is stopped when the test ends, also on failure.
package testenv

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// RepoRoot is the directory of the main module.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(data, []byte("module github.com/istio-acme/istio-acme-issuer\n")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("cannot find the repository root (the go.mod of github.com/istio-acme/istio-acme-issuer)")
		}
		dir = parent
	}
}

var (
	toolMu    sync.Mutex
	toolPaths = map[string]string{}
)

// Tool returns the path of a pinned tool that hack/tools/build.sh built,
// failing the test with the command that builds it when it is missing.
// With -short it skips the test instead: every real component (API server,
// etcd, Pebble, cert-manager, helm, ...) comes through here, so
// `go test -short ./...` runs the pure tests alone.
func Tool(t testing.TB, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs %s, a real component: left out by -short ('make test' runs it)", name)
	}
	toolMu.Lock()
	defer toolMu.Unlock()
	if p, ok := toolPaths[name]; ok {
		return p
	}
	root := RepoRoot(t)
	out, err := exec.Command(filepath.Join(root, "hack/tools/build.sh"), "--path", name).Output()
	if err != nil {
		t.Fatalf("locating tool %s: %v", name, err)
	}
	p := strings.TrimSpace(string(out))
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("tool %s is not built (%s): run 'make tools' first, or use 'make test'", name, p)
	}
	toolPaths[name] = p
	return p
}

// ModuleDir returns the module cache folder of a module the main module or
// one of the tool modules (dir, relative to the repository) requires.
func ModuleDir(t testing.TB, dir, module string) string {
	t.Helper()
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module)
	cmd.Dir = filepath.Join(RepoRoot(t), dir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("locating module %s: %v", module, err)
	}
	d := strings.TrimSpace(string(out))
	if d == "" {
		t.Fatalf("module %s is not downloaded: run 'go mod download' in %s", module, cmd.Dir)
	}
	return d
}

// handedOut are the ports FreePort returned in this process: a port is
// bound by whoever asked only later (a controller started after other
// ports were picked), so the kernel may offer it again meanwhile.
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// FreePort returns a loopback TCP port that was free a moment ago and that
// it has not returned before in this process.
func FreePort(t testing.TB) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close() // only the number was wanted
		if !handedOut.ports[port] {
			if handedOut.ports == nil {
				handedOut.ports = map[int]bool{}
			}
			handedOut.ports[port] = true
			return port
		}
	}
	t.Fatal("no loopback port that was not handed out already")
	return 0
}

// Addr is "127.0.0.1:<port>".
func Addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }
