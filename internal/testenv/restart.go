package testenv

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
)

// Restart stops kube-apiserver and starts it again with the same flags,
// certificates and port, while etcd (and everything stored) stays: what a
// control plane upgrade or a crashed API server looks like to clients. It
// returns once the new process answers /readyz, and how long clients had
// no API server. It may run in any goroutine: it returns its errors.
func (a *APIServer) Restart(t testing.TB) (time.Duration, error) {
	var pid int
	var args []string
	if a.restarted != nil {
		pid, args = a.restarted.PID(), a.restarted.cmd.Args[1:]
	} else {
		var err error
		if pid, args, err = childProcess(Tool(t, "kube-apiserver")); err != nil {
			return 0, err
		}
	}
	stopped := time.Now()
	// SIGTERM, as in a rolling restart; a server still draining after 10 s
	// is killed, as the kubelet does after the grace period.
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return 0, fmt.Errorf("stopping kube-apiserver: %w", err)
	}
	if !waitGone(pid, 10*time.Second) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		if !waitGone(pid, 10*time.Second) {
			return 0, fmt.Errorf("kube-apiserver (pid %d) did not stop", pid)
		}
	}
	a.restarted = StartProcess(t, "kube-apiserver", Tool(t, "kube-apiserver"), args)
	cs, err := kubernetes.NewForConfig(a.Config)
	if err != nil {
		return 0, err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		cancel()
		if err == nil && string(body) == "ok" {
			return time.Since(stopped), nil
		}
		if exited, perr := a.restarted.Exited(); exited {
			return 0, fmt.Errorf("restarted kube-apiserver exited: %v\n%s", perr, a.restarted.Log())
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("restarted kube-apiserver not ready after a minute: %v %s", err, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// childProcess finds this process's child running bin and returns its PID
// and arguments: envtest starts kube-apiserver and keeps its command line
// to itself.
func childProcess(bin string) (int, []string, error) {
	children, err := Children()
	if err != nil {
		return 0, nil, err
	}
	for _, c := range children {
		if c.Argv[0] == bin {
			return c.PID, c.Argv[1:], nil
		}
	}
	return 0, nil, fmt.Errorf("no child process runs %s", bin)
}

// waitGone reports whether the process ended within timeout.
func waitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		// Its parent reaps it; until then it is a zombie or running.
		f, err := StatFields(pid)
		if err != nil || len(f) > 0 && f[0] == "Z" {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}
