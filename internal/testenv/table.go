package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// Table is what `kubectl get` prints for a resource: the API server's own
// Table rendering, from the CRD's additionalPrinterColumns.
type Table struct {
	// Columns are the column names; Wide tells which ones kubectl shows
	// only with -o wide (priority above 0).
	Columns []string
	Wide    []bool
	// Rows are the cells of each object, in column order, as strings.
	Rows [][]string
}

// tableClients are the HTTP clients of GetTable by config: tests poll it,
// and a client (with its own transport and idle connections) per call
// would leave connections open behind every poll.
var tableClients sync.Map // *rest.Config -> *http.Client

func tableClient(cfg *rest.Config) (*http.Client, error) {
	if hc, ok := tableClients.Load(cfg); ok {
		return hc.(*http.Client), nil
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	actual, _ := tableClients.LoadOrStore(cfg, hc)
	return actual.(*http.Client), nil
}

// GetTable asks the API server for the Table of a resource, as kubectl does:
// path is the resource's URL path, such as
// /apis/istio-acme.io/v1alpha1/namespaces/apps/acmeorders.
func GetTable(ctx context.Context, cfg *rest.Config, path string) (Table, error) {
	hc, err := tableClient(cfg)
	if err != nil {
		return Table{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(cfg.Host, "/")+path, nil)
	if err != nil {
		return Table{}, err
	}
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	res, err := hc.Do(req)
	if err != nil {
		return Table{}, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return Table{}, fmt.Errorf("GET %s: %s", path, res.Status)
	}
	var t metav1.Table
	if err := json.NewDecoder(res.Body).Decode(&t); err != nil {
		return Table{}, fmt.Errorf("GET %s: decoding the Table: %w", path, err)
	}
	var out Table
	for _, c := range t.ColumnDefinitions {
		out.Columns = append(out.Columns, c.Name)
		out.Wide = append(out.Wide, c.Priority > 0)
	}
	for _, r := range t.Rows {
		var cells []string
		for _, c := range r.Cells {
			cells = append(cells, fmt.Sprint(c))
		}
		out.Rows = append(out.Rows, cells)
	}
	return out, nil
}

// Default returns the names of the columns kubectl shows without -o wide.
func (t Table) Default() []string {
	var out []string
	for i, c := range t.Columns {
		if !t.Wide[i] {
			out = append(out, c)
		}
	}
	return out
}

// Cell returns the value of column in row i, or "" without such a column.
func (t Table) Cell(i int, column string) string {
	for j, c := range t.Columns {
		if c == column && i < len(t.Rows) && j < len(t.Rows[i]) {
			return t.Rows[i][j]
		}
	}
	return ""
}
