// Package docs tests the documentation: every YAML example in it is one
// the API server (with this project's, cert-manager's and Istio's CRDs)
// accepts, or a Helm file helm takes, and every link between the pages
// leads to a page and a heading that exist.
package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

// pages are the documents users read, relative to the repository root.
func pages(t *testing.T) []string {
	root := testenv.RepoRoot(t)
	docs, err := filepath.Glob(filepath.Join(root, "docs/*.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := []string{"README.md", "SECURITY.md", "CHANGELOG.md", "charts/istio-acme-issuer/README.md"}
	for _, d := range docs {
		out = append(out, strings.TrimPrefix(d, root+"/"))
	}
	return out
}

func read(t *testing.T, page string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), page))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// example is one fenced code block.
type example struct {
	page, lang, text string
	line             int
}

var fence = regexp.MustCompile("^( *)```(\\S*)\\s*$")

// examples returns the fenced code blocks of a page, with the fence's
// indentation removed (blocks inside list items are indented).
func examples(page, text string) []example {
	var out []example
	var cur *example
	indent := ""
	for i, line := range strings.Split(text, "\n") {
		m := fence.FindStringSubmatch(line)
		switch {
		case cur == nil && m != nil:
			cur = &example{page: page, lang: m[2], line: i + 1}
			indent = m[1]
		case cur != nil && m != nil && m[2] == "":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.text += strings.TrimPrefix(line, indent) + "\n"
		}
	}
	return out
}

// TestExamplesApply sends every YAML example to the API server as a
// server-side dry-run apply (which refuses fields the schema does not
// declare), renders every Helm values example with the chart, and builds
// every umbrella Chart.yaml example against the chart.
func TestExamplesApply(t *testing.T) {
	api := testenv.StartAPIServer(t)
	chart := filepath.Join(testenv.RepoRoot(t), "charts/istio-acme-issuer")
	seen := map[string]int{}
	namespaces := map[string]bool{}
	for _, page := range pages(t) {
		for _, ex := range examples(page, read(t, page)) {
			if ex.lang != "yaml" {
				continue
			}
			where := ex.page + ":" + strconv.Itoa(ex.line)
			first := strings.TrimSpace(strings.SplitN(strings.TrimSpace(ex.text), "\n", 2)[0])
			switch {
			case strings.HasPrefix(first, "# Chart.yaml"):
				seen["umbrella charts"]++
				umbrella(t, where, ex.text, chart)
			case strings.HasPrefix(first, "# values.yaml"):
				seen["Helm values"]++
				values := filepath.Join(t.TempDir(), "values.yaml")
				if err := os.WriteFile(values, []byte(ex.text), 0o644); err != nil {
					t.Fatal(err)
				}
				if _, err := testenv.HelmResult(t, "template", "x", chart, "--kube-version", testenv.KubeVersion, "-f", values); err != nil {
					t.Errorf("%s: the chart refuses these values: %v", where, err)
				}
			default:
				for _, doc := range strings.Split(ex.text, "\n---\n") {
					var o unstructured.Unstructured
					if err := yaml.Unmarshal([]byte(doc), &o.Object); err != nil {
						t.Errorf("%s: not YAML: %v\n%s", where, err, doc)
						continue
					}
					if o.GetAPIVersion() == "" || o.GetKind() == "" {
						t.Errorf("%s: an example that is not a whole object (no apiVersion and kind), a values file (# values.yaml) or an umbrella chart (# Chart.yaml); a test cannot apply it:\n%s", where, doc)
						continue
					}
					if ns := o.GetNamespace(); ns != "" && !namespaces[ns] {
						namespaces[ns] = true
						api.CreateNamespaces(t, ns)
					}
					if err := api.ApplyObject("default", &o, client.DryRunAll); err != nil {
						t.Errorf("%s: %v", where, err)
					}
					seen[o.GetKind()]++
				}
			}
		}
	}
	t.Logf("examples applied: %v", seen)
	for _, kind := range []string{"ACMEClusterIssuer", "ACMEIssuer", "Certificate", "HostnameGrant", "Gateway", "ClusterIssuer", "IstioSolverClass", "umbrella charts"} {
		if seen[kind] == 0 {
			t.Errorf("no %s example was found in the docs; the test's page list or the docs moved", kind)
		}
	}
}

// umbrella writes an umbrella chart example with its dependency pointed at
// the chart in the clone, and has helm build and render it.
func umbrella(t *testing.T, where, chartYAML, chart string) {
	dir := filepath.Join(t.TempDir(), "umbrella")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	local := regexp.MustCompile(`repository: \S+`).ReplaceAllString(chartYAML, "repository: file://"+chart)
	if err := os.WriteFile(filepath.Join(dir, "Chart.yaml"), []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := testenv.HelmResult(t, "dependency", "build", dir); err != nil {
		t.Errorf("%s: helm dependency build: %v", where, err)
		return
	}
	if _, err := testenv.HelmResult(t, "template", "x", dir, "--kube-version", testenv.KubeVersion); err != nil {
		t.Errorf("%s: helm template: %v", where, err)
	}
}

var (
	link    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	heading = regexp.MustCompile(`(?m)^#{1,6} (.+)$`)
	notSlug = regexp.MustCompile(`[^a-z0-9 _-]`)
)

// anchors returns the heading anchors of a page as GitHub makes them.
func anchors(text string) []string {
	var out []string
	inFence := false
	for _, line := range strings.Split(text, "\n") {
		if fence.MatchString(line) {
			inFence = !inFence
		}
		if inFence {
			continue
		}
		if m := heading.FindStringSubmatch(line); m != nil {
			slug := notSlug.ReplaceAllString(strings.ToLower(strings.TrimSpace(m[1])), "")
			out = append(out, strings.ReplaceAll(slug, " ", "-"))
		}
	}
	return out
}

// TestLinksResolve checks every relative link between the pages: the file
// exists, and so does the heading it points at.
func TestLinksResolve(t *testing.T) {
	root := testenv.RepoRoot(t)
	checked := 0
	for _, page := range pages(t) {
		text := read(t, page)
		for _, m := range link.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			path := page
			if file != "" {
				path = filepath.Join(filepath.Dir(page), file)
				if _, err := os.Stat(filepath.Join(root, path)); err != nil {
					t.Errorf("%s: link %s: %s does not exist", page, target, path)
					continue
				}
			}
			checked++
			if anchor == "" {
				continue
			}
			if !strings.HasSuffix(path, ".md") {
				t.Errorf("%s: link %s: an anchor into a file that is not a page", page, target)
				continue
			}
			if !slices.Contains(anchors(read(t, path)), anchor) {
				t.Errorf("%s: link %s: %s has no heading #%s", page, target, path, anchor)
			}
		}
	}
	if checked < 20 {
		t.Errorf("%d links checked", checked)
	}
}

// TestReadmeIsShort keeps the README the first screen it should be: what
// it is, why, compatibility, the quick start, links.
func TestReadmeIsShort(t *testing.T) {
	if n := strings.Count(read(t, "README.md"), "\n"); n > 200 {
		t.Errorf("README.md has %d lines; move detail to docs/ (at most 200)", n)
	}
}
