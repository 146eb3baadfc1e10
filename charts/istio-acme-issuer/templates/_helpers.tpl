{{- define "istio-acme-issuer.fullname" -}}
{{- default "istio-acme-issuer" .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "istio-acme-issuer.selectorLabels" -}}
app.kubernetes.io/name: istio-acme-issuer
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "istio-acme-issuer.labels" -}}
{{ include "istio-acme-issuer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "istio-acme-issuer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "istio-acme-issuer.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name: name the ServiceAccount the controller runs as when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "istio-acme-issuer.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}
{{- end -}}

{{- define "istio-acme-issuer.clusterResourceNamespace" -}}
{{- default .Release.Namespace .Values.clusterResourceNamespace -}}
{{- end -}}

{{- /*
The namespaces in which a namespaced Role of the controller (a kubebuilder
RBAC marker with namespace=ROLE) is granted, as a YAML list; ["*"] grants it
cluster-wide.
*/ -}}
{{- define "istio-acme-issuer.roleNamespaces" -}}
{{- $v := .ctx.Values.rbac -}}
{{- if eq .role "issuer-secrets" -}}
{{- if $v.secretsClusterWide -}}
{{- list "*" | toYaml -}}
{{- else -}}
{{- prepend $v.issuerNamespaces (include "istio-acme-issuer.clusterResourceNamespace" .ctx) | uniq | toYaml -}}
{{- end -}}
{{- else if eq .role "challenge-routes" -}}
{{- $v.gatewayNamespaces | uniq | toYaml -}}
{{- else if eq .role "temporary-https" -}}
{{- $v.temporaryHTTPSNamespaces | default list | uniq | toYaml -}}
{{- else if eq .role "gateway-shim" -}}
{{- /* Certificates in every namespace, only while the shim runs. */ -}}
{{- if .ctx.Values.gatewayShim.enabled -}}
{{- list "*" | toYaml -}}
{{- else -}}
{{- list | toYaml -}}
{{- end -}}
{{- else if eq .role "mesh-config" -}}
{{- /* istiod's mesh configuration ConfigMap's namespace, when one is read. */ -}}
{{- with .ctx.Values.istio.meshConfig -}}
{{- list (first (splitList "/" .)) | toYaml -}}
{{- else -}}
{{- list | toYaml -}}
{{- end -}}
{{- else if eq .role "renewals" -}}
{{- /* Certificates read and their renewal asked for in every namespace,
only while renewals follow the CA's renewal information. */ -}}
{{- if .ctx.Values.renewalInfo.enabled -}}
{{- list "*" | toYaml -}}
{{- else -}}
{{- list | toYaml -}}
{{- end -}}
{{- else -}}
{{- fail (printf "no namespaces are configured for the controller's Role %q: add it to istio-acme-issuer.roleNamespaces" .role) -}}
{{- end -}}
{{- end -}}
