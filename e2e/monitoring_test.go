package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/istio-acme/istio-acme-issuer/internal/metrics"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

// exported is what a metrics endpoint serves: each series name with the
// names of its labels.
type exported map[string]map[string]bool

func (e exported) add(name string, labels ...string) {
	if e[name] == nil {
		e[name] = map[string]bool{}
	}
	for _, l := range labels {
		e[name][l] = true
	}
}

// scrape reads the metric families a running process serves.
func scrape(t *testing.T, addr string, into exported) {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scraping %s: %v", addr, err)
	}
	defer res.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("parsing the metrics of %s: %v", addr, err)
	}
	for name, f := range families {
		var labels []string
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				labels = append(labels, lp.GetName())
			}
		}
		addFamily(into, name, f.GetType(), labels)
	}
}

// addFamily adds the series a family of type typ is exposed as.
func addFamily(into exported, name string, typ dto.MetricType, labels []string) {
	switch typ {
	case dto.MetricType_HISTOGRAM:
		into.add(name+"_bucket", append(labels, "le")...)
		into.add(name+"_sum", labels...)
		into.add(name+"_count", labels...)
	case dto.MetricType_SUMMARY:
		into.add(name, append(labels, "quantile")...)
		into.add(name+"_sum", labels...)
		into.add(name+"_count", labels...)
	default:
		into.add(name, labels...)
	}
}

var descPattern = regexp.MustCompile(`^Desc\{fqName: "([^"]+)", .*variableLabels: \{([^}]*)\}\}$`)

// declared adds the controller's own metrics as they are declared, with
// every label, also those no scenario has given a value yet.
func declared(t *testing.T, into exported) {
	for _, c := range metrics.Collectors() {
		typ := dto.MetricType_COUNTER
		if _, ok := c.(*prometheus.HistogramVec); ok {
			typ = dto.MetricType_HISTOGRAM
		}
		descs := make(chan *prometheus.Desc, 10)
		c.Describe(descs)
		close(descs)
		for d := range descs {
			m := descPattern.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("cannot read the metric's name and labels from %s", d)
			}
			var labels []string
			if m[2] != "" {
				labels = strings.Split(m[2], ",")
			}
			addFamily(into, m[1], typ, labels)
		}
	}
}

// targetLabels are the labels Prometheus adds to every scraped series.
var targetLabels = []string{"job", "instance"}

// checkQuery parses a PromQL expression and checks that every series it
// selects is one that is exported, with labels it has.
func checkQuery(expr string, known exported) error {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return err
	}
	var problems []string
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		vs, ok := node.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		labels, ok := known[vs.Name]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s is not exported", vs.Name))
			return nil
		}
		for _, m := range vs.LabelMatchers {
			if m.Name != model.MetricNameLabel && !labels[m.Name] && !slices.Contains(targetLabels, m.Name) {
				problems = append(problems, fmt.Sprintf("%s has no label %s", vs.Name, m.Name))
			}
		}
		return nil
	})
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		agg, ok := node.(*parser.AggregateExpr)
		if !ok || agg.Without {
			return nil
		}
		for _, l := range agg.Grouping {
			found := slices.Contains(targetLabels, l)
			parser.Inspect(agg.Expr, func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok && known[vs.Name][l] {
					found = true
				}
				return nil
			})
			// exported_namespace is where Prometheus moves a series' own
			// namespace label when the target's clashes with it.
			if !found && l != "exported_namespace" {
				problems = append(problems, fmt.Sprintf("grouping by %s, which none of the selected series has", l))
			}
		}
		return nil
	})
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

// grafanaVariables stand for what Grafana substitutes before it sends a
// query.
var grafanaVariables = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h", `"$job"`, `".+"`)

// checkMonitoring checks every query of the chart's Grafana dashboard and
// every alert of its rules against what the controller and cert-manager
// actually export.
func checkMonitoring(t *testing.T, c *cluster) {
	known := exported{}
	scrape(t, c.metricsAddr, known)
	scrape(t, c.certManagerMetricsAddr, known)
	declared(t, known)

	chart := filepath.Join(testenv.RepoRoot(t), "charts/istio-acme-issuer")
	data, err := os.ReadFile(filepath.Join(chart, "dashboards/istio-acme-issuer.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dashboard struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dashboard); err != nil {
		t.Fatalf("the dashboard: %v", err)
	}
	queries := 0
	for _, p := range dashboard.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for _, target := range p.Targets {
			queries++
			if err := checkQuery(grafanaVariables.Replace(target.Expr), known); err != nil {
				t.Errorf("dashboard panel %q: %s: %v", p.Title, target.Expr, err)
			}
		}
	}

	data, err = os.ReadFile(filepath.Join(chart, "files/alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
				Expr  string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatal(err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			queries++
			if err := checkQuery(r.Expr, known); err != nil {
				t.Errorf("alert %s: %s: %v", r.Alert, r.Expr, err)
			}
		}
	}
	t.Logf("%d dashboard and alert queries checked against %d exported series names", queries, len(known))
}

// TestCheckQueryRefuses shows the monitoring check catching the mistakes it
// is for: a misspelled metric, a label the series does not have, a grouping
// by a label no selected series has.
func TestCheckQueryRefuses(t *testing.T) {
	known := exported{}
	declared(t, known)
	for expr, want := range map[string]string{
		`sum(rate(istio_acme_order_total[5m]))`:                                             "istio_acme_order_total is not exported",
		`sum(rate(istio_acme_orders_total{outcom="valid"}[5m]))`:                            "has no label outcom",
		`sum by (reason) (rate(istio_acme_orders_total[5m]))`:                               "grouping by reason",
		`histogram_quantile(0.9, sum by (le) (rate(istio_acme_time_to_issue_seconds[5m])))`: "istio_acme_time_to_issue_seconds is not exported",
		`sum(rate(istio_acme_orders_total[5m]`:                                              "unclosed",
	} {
		if err := checkQuery(expr, known); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error saying %q", expr, err, want)
		}
	}
	for _, ok := range []string{
		`sum by (outcome, job) (rate(istio_acme_orders_total{outcome="valid", job=~".+"}[5m]))`,
		`histogram_quantile(0.9, sum by (le) (rate(istio_acme_time_to_issue_seconds_bucket[5m])))`,
	} {
		if err := checkQuery(ok, known); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}
