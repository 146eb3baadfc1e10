package docs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

// The README's architecture map stays true to the code: every package it
// names exists, and every file it names (a pattern for routekind_*.go) is
// in the package of its line.
func TestArchitectureMapNamesWhatExists(t *testing.T) {
	root := testenv.RepoRoot(t)
	readme := read(t, "README.md")
	_, section, ok := strings.Cut(readme, "## Architecture\n")
	if !ok {
		t.Fatal("README.md has no Architecture section")
	}
	_, block, _ := strings.Cut(section, "```text\n")
	block, _, _ = strings.Cut(block, "```")
	dir, files := "", 0
	for _, line := range strings.Split(strings.TrimSpace(block), "\n") {
		if !strings.HasPrefix(line, " ") {
			dir = strings.TrimSuffix(strings.Fields(line)[0], "/")
			if d := strings.TrimSuffix(dir, "/..."); d != dir {
				dir = d
			}
			if st, err := os.Stat(filepath.Join(root, dir)); err != nil || !st.IsDir() {
				t.Errorf("the architecture map names %s, which is not a directory", dir)
			}
		}
		for _, w := range strings.FieldsFunc(line, func(r rune) bool { return strings.ContainsRune(" ,()", r) }) {
			if !strings.HasSuffix(w, ".go") {
				continue
			}
			files++
			if m, _ := filepath.Glob(filepath.Join(root, dir, w)); len(m) == 0 {
				t.Errorf("the architecture map names %s in %s, which has no such file", w, dir)
			}
		}
	}
	if files < 5 {
		t.Errorf("only %d files named in the architecture map; the test reads it wrong", files)
	}
}
