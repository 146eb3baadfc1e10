package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// envtest starts etcd and kube-apiserver without a parent-death signal, so
// a test binary that dies before its cleanups run (a -timeout panic, a
// crash) would leave them running. The reaper is a small shell that the
// kernel sends SIGTERM when this process ends; it then kills the processes
// listed in its file, and itself. Processes started with StartProcess need
// none of this: they get SIGKILL from the kernel directly.
var reaper struct {
	once sync.Once
	err  error
	mu   sync.Mutex
	path string
	pids []int
}

// reaperScript kills the PIDs in file $1 on SIGTERM; waiting on a
// background sleep lets the trap run at once.
const reaperScript = `trap 'kill -9 $(cat "$1") 2>/dev/null; rm -f "$1"; kill -9 0' TERM
while :; do sleep 3600 & wait $!; done`

// guardChildren has the reaper kill pids if this process dies first.
func guardChildren(pids ...int) error {
	reaper.once.Do(startReaper)
	if reaper.err != nil {
		return reaper.err
	}
	reaper.mu.Lock()
	defer reaper.mu.Unlock()
	reaper.pids = append(reaper.pids, pids...)
	return writeReaperFile()
}

// releaseChildren takes pids off the reaper's list once they have ended:
// their numbers may be reused.
func releaseChildren(pids ...int) {
	reaper.mu.Lock()
	defer reaper.mu.Unlock()
	reaper.pids = slices.DeleteFunc(reaper.pids, func(p int) bool { return slices.Contains(pids, p) })
	if reaper.path != "" {
		_ = writeReaperFile() // at worst the reaper kills a number that is no longer ours to kill, at exit
	}
}

func writeReaperFile() error {
	var b strings.Builder
	for _, p := range reaper.pids {
		b.WriteString(strconv.Itoa(p) + " ")
	}
	tmp := reaper.path + ".new"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, reaper.path)
}

func startReaper() {
	f, err := os.CreateTemp("", "testenv-reaper-")
	if err != nil {
		reaper.err = err
		return
	}
	f.Close()
	reaper.path = f.Name()
	started := make(chan error)
	go func() {
		// The parent-death signal comes when the thread that started the
		// child ends, not the process: this thread never does.
		runtime.LockOSThread()
		cmd := exec.Command("sh", "-c", reaperScript, "reaper", reaper.path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
		err := cmd.Start()
		started <- err
		if err == nil {
			_ = cmd.Wait() // ends only when this process does
		}
		select {}
	}()
	if err := <-started; err != nil {
		reaper.err = fmt.Errorf("starting the reaper of envtest's processes: %w", err)
	}
}
