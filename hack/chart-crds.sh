#!/usr/bin/env bash
# Copies the generated CRDs into the chart as templates, so that the chart's
# crds.enabled and crds.keep values apply to them.
set -euo pipefail
src=$1 dst=$2
mkdir -p "$dst"
rm -f "$dst"/*.yaml
for f in "$src"/*.yaml; do
  out="$dst/$(basename "$f")"
  {
    echo '{{- if .Values.crds.enabled }}'
    # The CRD's own metadata gains the chart's labels and, with crds.keep,
    # the annotation that keeps Helm from deleting it on uninstall.
    awk '
      /^metadata:$/ && !done {
        print
        print "  labels:"
        print "    {{- include \"istio-acme-issuer.labels\" . | nindent 4 }}"
        getline
        if ($0 ~ /^  annotations:$/) {
          print
          print "    {{- if .Values.crds.keep }}"
          print "    helm.sh/resource-policy: keep"
          print "    {{- end }}"
        } else {
          print "  annotations:"
          print "    {{- if .Values.crds.keep }}"
          print "    helm.sh/resource-policy: keep"
          print "    {{- end }}"
          print
        }
        done = 1
        next
      }
      { print }
    ' "$f" | sed '/^---$/d'
    echo '{{- end }}'
  } > "$out"
done
