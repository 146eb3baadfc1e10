package main

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

func TestSetMemoryLimitFromCgroup(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	write := func(t *testing.T, dir, name, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("GOMEMLIMIT", "")
	tests := []struct {
		name, file, content string
		want                int64
	}{
		{"cgroup v2 limit", "memory.max", "268435456\n", 241591910},
		{"cgroup v2 without limit", "memory.max", "max\n", 0},
		{"cgroup v1 limit", "memory/memory.limit_in_bytes", "134217728\n", 120795955},
		{"cgroup v1 without limit", "memory/memory.limit_in_bytes", "9223372036854771712\n", 0},
		{"no cgroup files", "other", "1", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, tt.file, tt.content)
			debug.SetMemoryLimit(1 << 40)
			got := setMemoryLimit(dir)
			if got != tt.want {
				t.Errorf("set %d, want %d", got, tt.want)
			}
			if applied := debug.SetMemoryLimit(-1); tt.want > 0 && applied != tt.want {
				t.Errorf("the runtime's limit is %d, want %d", applied, tt.want)
			}
		})
	}
	t.Run("GOMEMLIMIT wins", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, "memory.max", "268435456")
		t.Setenv("GOMEMLIMIT", "100MiB")
		if got := setMemoryLimit(dir); got != 0 {
			t.Errorf("set %d with GOMEMLIMIT in the environment, want nothing", got)
		}
	})
}

func TestSetGCPercentUnlessGOGCIsSet(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	t.Setenv("GOGC", "")
	if got := setGCPercent(); got != gcPercent {
		t.Errorf("without GOGC: set %d, want %d", got, gcPercent)
	}
	if prev := debug.SetGCPercent(100); prev != gcPercent {
		t.Errorf("without GOGC: the collector's percentage is %d, want %d", prev, gcPercent)
	}
	t.Setenv("GOGC", "200")
	if got := setGCPercent(); got != 0 {
		t.Errorf("with GOGC=200: set %d, want to leave it", got)
	}
	if prev := debug.SetGCPercent(100); prev != 100 {
		t.Errorf("with GOGC=200: the collector's percentage is %d, want it untouched (100)", prev)
	}
}
