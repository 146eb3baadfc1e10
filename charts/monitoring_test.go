package charts

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

// ruleFile is the part of a Prometheus rule file the tests read.
type ruleFile struct {
	Groups []struct {
		Name  string           `json:"name"`
		Rules []map[string]any `json:"rules"`
	} `json:"groups"`
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestAlertRules has Prometheus's own promtool check the chart's alerts and
// run their tests, and checks that every alert has a test that makes it
// fire.
func TestAlertRules(t *testing.T) {
	promtool := testenv.Tool(t, "promtool")
	alerts := filepath.Join(chartDir(t), "files/alerts.yaml")
	for _, args := range [][]string{{"check", "rules", alerts}, {"test", "rules", "monitoring/alerts_test.yaml"}} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
	}

	var rules ruleFile
	readYAML(t, alerts, &rules)
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	readYAML(t, "monitoring/alerts_test.yaml", &tests)
	fires := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			}
		}
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			name, _ := r["alert"].(string)
			if !fires[name] {
				t.Errorf("alert %s has no test in monitoring/alerts_test.yaml that makes it fire", name)
			}
			labels, _ := r["labels"].(map[string]any)
			annotations, _ := r["annotations"].(map[string]any)
			if labels["severity"] == nil || annotations["summary"] == nil || annotations["description"] == nil {
				t.Errorf("alert %s lacks a severity, a summary or a description", name)
			}
		}
	}
	if n < 5 {
		t.Errorf("%d alerts in %s", n, alerts)
	}
}

// TestPrometheusRuleIsTheAlertsFile renders the PrometheusRule and checks
// that it holds exactly the tested alerts, with the chart's additions.
func TestPrometheusRuleIsTheAlertsFile(t *testing.T) {
	var want ruleFile
	readYAML(t, filepath.Join(chartDir(t), "files/alerts.yaml"), &want)
	for _, o := range render(t, "prometheusRule.enabled=true", "prometheusRule.alertLabels.team=platform",
		"prometheusRule.alertLabels.severity=page", "prometheusRule.disabled={IstioACMEHostsNotAllowed}") {
		if o.GetKind() != "PrometheusRule" {
			continue
		}
		data, err := json.Marshal(o.Object["spec"])
		if err != nil {
			t.Fatal(err)
		}
		var got ruleFile
		if err := json.Unmarshal(data, &got); err != nil {
			t.Fatal(err)
		}
		for gi, g := range want.Groups {
			var rules []map[string]any
			for _, r := range g.Rules {
				if r["alert"] == "IstioACMEHostsNotAllowed" {
					continue
				}
				labels := map[string]any{"team": "platform"}
				for k, v := range r["labels"].(map[string]any) {
					labels[k] = v // the alert's own severity wins
				}
				r["labels"] = labels
				rules = append(rules, r)
			}
			if gi >= len(got.Groups) || !reflect.DeepEqual(got.Groups[gi].Rules, rules) {
				t.Errorf("PrometheusRule group %s differs from files/alerts.yaml with the chart's labels:\n got %v\nwant %v", g.Name, got.Groups, rules)
			}
		}
		return
	}
	t.Fatal("prometheusRule.enabled=true renders no PrometheusRule")
}

// TestDashboardIsShipped renders the dashboard's ConfigMap and checks it
// holds the dashboard as valid JSON, where Grafana's sidecar looks.
func TestDashboardIsShipped(t *testing.T) {
	if slices.Contains(kinds(render(t)), "ConfigMap/istio-acme-issuer-dashboard") {
		t.Error("the dashboard ConfigMap is rendered by default")
	}
	for _, o := range render(t, "dashboard.enabled=true", "dashboard.namespace=monitoring") {
		if o.GetKind() != "ConfigMap" {
			continue
		}
		data, _, _ := unstructured.NestedString(o.Object, "data", "istio-acme-issuer.json")
		var d struct {
			UID    string `json:"uid"`
			Panels []any  `json:"panels"`
		}
		if err := json.Unmarshal([]byte(data), &d); err != nil || d.UID != "istio-acme-issuer" || len(d.Panels) == 0 {
			t.Errorf("the dashboard ConfigMap holds no dashboard (%v): %.200s", err, data)
		}
		if o.GetNamespace() != "monitoring" || o.GetLabels()["grafana_dashboard"] != "1" {
			t.Errorf("dashboard ConfigMap in %q with labels %v, want monitoring and grafana_dashboard=1", o.GetNamespace(), o.GetLabels())
		}
		return
	}
	t.Fatal("dashboard.enabled=true renders no ConfigMap")
}
