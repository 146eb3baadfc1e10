package testenv

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Child is a running process that this test binary started.
type Child struct {
	PID int
	// Argv is its command line; Argv[0] is the binary as started.
	Argv []string
}

// Children lists the running processes whose parent is this process.
func Children() ([]Child, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	me := strconv.Itoa(os.Getpid())
	var out []Child
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fields, err := StatFields(pid)
		if err != nil {
			continue // ended meanwhile
		}
		if len(fields) < 2 || fields[1] != me {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(cmdline) == 0 {
			continue // ended meanwhile, or a zombie
		}
		out = append(out, Child{PID: pid, Argv: strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")})
	}
	return out, nil
}

// StatFields returns the fields of /proc/PID/stat after the command name
// (which is in parentheses and may hold spaces): the state first, then the
// parent's PID; the user and system CPU ticks are the 12th and 13th.
func StatFields(pid int) ([]string, error) {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])), nil
}

// startedSince returns the PIDs of this process's children running one of
// bins that were not in before.
func startedSince(before []Child, bins ...string) ([]int, error) {
	now, err := Children()
	if err != nil {
		return nil, err
	}
	var out []int
	for _, c := range now {
		known := slices.ContainsFunc(before, func(b Child) bool { return b.PID == c.PID })
		if !known && slices.Contains(bins, c.Argv[0]) {
			out = append(out, c.PID)
		}
	}
	return out, nil
}
