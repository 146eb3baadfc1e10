package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a child process whose output goes to a log file; the log's tail
// is printed when the test fails.
type Process struct {
	Name    string
	LogPath string

	t    testing.TB
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	err  error
}

// StartProcess starts a command in its own process group; it is killed when
// the test ends, and when the test binary dies.
func StartProcess(t testing.TB, name, bin string, args []string, env ...string) *Process {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, t: t, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		logFile.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			p.DumpLog(200)
		}
		p.keepLog()
	})
	return p
}

// PID is the process's ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.err
	default:
		return false, nil
	}
}

// Stop asks the process group to terminate and kills it after 10 seconds.
func (p *Process) Stop() {
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.Kill()
	}
}

// Kill ends the process group at once, as a crash would.
func (p *Process) Kill() {
	p.signal(syscall.SIGKILL)
	<-p.done
}

func (p *Process) signal(sig syscall.Signal) {
	if done, _ := p.Exited(); done {
		return
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		p.t.Logf("signalling %s: %v", p.Name, err)
	}
}

// DumpLog prints the last lines of the process's output to the test log.
func (p *Process) DumpLog(lines int) {
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		p.t.Logf("%s: no log: %v", p.Name, err)
		return
	}
	all := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	p.t.Logf("---- last %d lines of %s (%s) ----\n%s", len(all), p.Name, p.LogPath, bytes.Join(all, []byte("\n")))
}

// Log returns the process's output so far.
func (p *Process) Log() string {
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(data)
}

// keepLog copies the log into $TEST_LOG_DIR, when set, before the test's
// temporary folder is removed.
func (p *Process) keepLog() {
	dir := os.Getenv("TEST_LOG_DIR")
	if dir == "" {
		return
	}
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		return
	}
	name := fmt.Sprintf("%s-%d.log", p.Name, p.cmd.Process.Pid)
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		p.t.Logf("keeping the log of %s: %v", p.Name, err)
	}
}
