// Command valuestable writes the chart's configuration table into the
// chart's README from the "# --" comments of values.yaml, between the markers
// <!-- values-table:start --> and <!-- values-table:end -->.
//
//	go run ./hack/valuestable charts/istio-acme-issuer/values.yaml charts/istio-acme-issuer/README.md
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

const (
	startMarker = "<!-- values-table:start -->"
	endMarker   = "<!-- values-table:end -->"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: valuestable VALUES_YAML README")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "valuestable:", err)
		os.Exit(1)
	}
}

func run(valuesPath, readmePath string) error {
	data, err := os.ReadFile(valuesPath)
	if err != nil {
		return err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", valuesPath, err)
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return fmt.Errorf("%s is not a YAML mapping", valuesPath)
	}
	var rows []string
	if err := walk(doc.Content[0], "", &rows); err != nil {
		return err
	}
	table := "| value | default | meaning |\n| --- | --- | --- |\n" + strings.Join(rows, "\n") + "\n"

	readme, err := os.ReadFile(readmePath)
	if err != nil {
		return err
	}
	before, rest, ok := bytes.Cut(readme, []byte(startMarker))
	if !ok {
		return fmt.Errorf("%s has no %s", readmePath, startMarker)
	}
	_, after, ok := bytes.Cut(rest, []byte(endMarker))
	if !ok {
		return fmt.Errorf("%s has no %s", readmePath, endMarker)
	}
	var out bytes.Buffer
	out.Write(before)
	out.WriteString(startMarker + "\n" + table + endMarker)
	out.Write(after)
	return os.WriteFile(readmePath, out.Bytes(), 0o644)
}

// walk adds a row per documented value; an undocumented mapping is walked
// into, anything else undocumented is an error, so no value goes unexplained.
func walk(m *yaml.Node, prefix string, rows *[]string) error {
	for i := 0; i+1 < len(m.Content); i += 2 {
		key, val := m.Content[i], m.Content[i+1]
		path := prefix + key.Value
		doc, documented := description(key.HeadComment)
		switch {
		case documented:
			def, err := render(val)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			*rows = append(*rows, fmt.Sprintf("| `%s` | `%s` | %s |", path, def, doc))
		case val.Kind == yaml.MappingNode && len(val.Content) > 0:
			if err := walk(val, path+".", rows); err != nil {
				return err
			}
		default:
			return errors.New(path + " has no \"# --\" comment")
		}
	}
	return nil
}

// description returns the text of the "# --" paragraph of a head comment.
func description(comment string) (string, bool) {
	var parts []string
	found := false
	for _, line := range strings.Split(comment, "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "#"))
		if rest, ok := strings.CutPrefix(line, "-- "); ok {
			found, parts = true, []string{rest}
			continue
		}
		if found && line != "" {
			parts = append(parts, line)
		}
	}
	return strings.ReplaceAll(strings.Join(parts, " "), "|", "\\|"), found
}

// render shows a default compactly, as JSON.
func render(n *yaml.Node) (string, error) {
	var v any
	if err := n.Decode(&v); err != nil {
		return "", err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return strings.ReplaceAll(string(b), "|", "\\|"), nil
}
