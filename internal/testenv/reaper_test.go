package testenv

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A test binary that dies before its cleanups run (here: os.Exit, as after
// a -timeout panic) leaves no kube-apiserver or etcd behind.
func TestAPIServerDiesWithTestBinary(t *testing.T) {
	if os.Getenv("TESTENV_DIE_WITH_API_SERVER") == "1" {
		StartAPIServer(t)
		children, err := Children()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range children {
			os.Stdout.WriteString("child " + strconv.Itoa(c.PID) + " " + c.Argv[0] + "\n")
		}
		os.Exit(3) // no cleanup runs
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAPIServerDiesWithTestBinary$", "-test.count=1")
	// The helper's temporary directories, which its cleanups would have
	// removed, go in this test's own.
	cmd.Env = append(os.Environ(), "TESTENV_DIE_WITH_API_SERVER=1", "TMPDIR="+t.TempDir())
	out, _ := cmd.CombinedOutput() // it exits 3 on purpose
	var pids []int
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "child" && (strings.HasSuffix(f[2], "/kube-apiserver") || strings.HasSuffix(f[2], "/etcd")) {
			pid, _ := strconv.Atoi(f[1])
			pids = append(pids, pid)
		}
	}
	if len(pids) != 2 {
		t.Fatalf("the helper reported %v as kube-apiserver and etcd; its output:\n%s", pids, out)
	}
	for _, pid := range pids {
		if !waitGone(pid, 15*time.Second) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("process %d still runs 15 s after the test binary that started it died", pid)
		}
	}
}
