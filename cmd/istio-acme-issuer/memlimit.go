package main

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// memoryLimitShare is the part of the container's memory limit the Go heap
// may grow to before the garbage collector works harder to stay under it;
// the rest is for goroutine stacks, the runtime and the binary.
const memoryLimitShare = 0.9

// setMemoryLimit gives the garbage collector a soft limit below the
// container's memory limit, read from the cgroup under root, unless
// GOMEMLIMIT sets one. Without it, a burst (a relist of thousands of Istio
// objects, a renewal wave) lets the heap grow to twice its live size and
// the kernel kills the pod at the container's limit. It returns the limit
// set, or 0.
func setMemoryLimit(root string) int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	limit := cgroupMemoryLimit(root)
	if limit <= 0 {
		return 0
	}
	soft := int64(float64(limit) * memoryLimitShare)
	debug.SetMemoryLimit(soft)
	return soft
}

// cgroupMemoryLimit reads the memory limit of the process's cgroup (v2's
// memory.max, else v1's memory.limit_in_bytes); 0 when there is none.
func cgroupMemoryLimit(root string) int64 {
	for _, f := range []string{"memory.max", "memory/memory.limit_in_bytes"} {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(data))
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || n >= 1<<62 { // "max", or v1's "unlimited"
			return 0
		}
		return n
	}
	return 0
}
