{{/* The chart's name, or nameOverride. */}}
{{- define "posture-connector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release-qualified name used for every object. */}}
{{- define "posture-connector.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "posture-connector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "posture-connector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "posture-connector.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "posture-connector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "posture-connector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "posture-connector.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "posture-connector.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Where the mounted files live in the container. */}}
{{- define "posture-connector.paths" -}}
config: /etc/posture-connector/config.toml
tls: /etc/posture-connector/tls
clientCA: /etc/posture-connector/client-ca
secrets: /run/secrets/posture-connector
state: /var/lib/posture-connector
{{- end }}

{{/* The whole config.toml: the chart's [server] table, then the user's config. */}}
{{- define "posture-connector.configToml" -}}
{{- $paths := include "posture-connector.paths" . | fromYaml -}}
{{- if regexMatch "(?m)^\\s*\\[server\\]" .Values.config }}
{{- fail "config: leave out the [server] table; set server.* values instead (the chart writes [server] to match its mounts)" }}
{{- end -}}
{{- if regexMatch "(?m)^\\s*\\[store\\]" .Values.config }}
{{- fail "config: leave out the [store] table; set store.urlSecretKey instead (the chart writes [store] to match its mounts)" }}
{{- end -}}
# Written by the posture-connector Helm chart.
[server]
host = "0.0.0.0"
port = {{ int .Values.server.port }}
tls_cert = {{ printf "%s/tls.crt" $paths.tls | toJson }}
tls_key = {{ printf "%s/tls.key" $paths.tls | toJson }}
client_ca = {{ printf "%s/%s" $paths.clientCA .Values.clientCA.key | toJson }}
client_dns_names = {{ .Values.server.clientDnsNames | toJson }}
shutdown_timeout = {{ .Values.server.shutdownTimeout }}
{{- range $key, $value := .Values.server.extra }}
{{ $key }} = {{ $value | toJson }}
{{- end }}

[store]
{{- if .Values.store.urlSecretKey }}
backend = "postgresql"
url = { file = {{ printf "%s/%s" $paths.secrets .Values.store.urlSecretKey | toJson }} }
{{- else }}
path = {{ printf "%s/posture-connector.sqlite3" $paths.state | toJson }}
{{- end }}

{{ .Values.config }}
{{- end }}

{{/* Refuse values that would deploy something broken or unsafe. */}}
{{- define "posture-connector.validate" -}}
{{- $drain := add .Values.lifecycle.preStopSleepSeconds .Values.server.shutdownTimeout }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int $drain) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be larger than lifecycle.preStopSleepSeconds + server.shutdownTimeout (%v), or Kubernetes kills requests in flight" .Values.terminationGracePeriodSeconds $drain) }}
{{- end }}
{{- if not .Values.tls.existingSecret }}
{{- fail "tls.existingSecret: name the kubernetes.io/tls Secret holding the connector's certificate" }}
{{- end }}
{{- if eq (empty .Values.clientCA.existingConfigMap) (empty .Values.clientCA.existingSecret) }}
{{- fail "clientCA: set exactly one of existingConfigMap and existingSecret (step-ca's root certificate)" }}
{{- end }}
{{- if and (not .Values.store.urlSecretKey) (gt (int .Values.replicaCount) 1) }}
{{- fail "store.urlSecretKey: replicas share their store in PostgreSQL (name the key of secrets.existingSecret holding its URL); SQLite serves replicaCount 1 only" }}
{{- end }}
{{- if and .Values.store.urlSecretKey (not .Values.secrets.existingSecret) }}
{{- fail "store.urlSecretKey: needs secrets.existingSecret, the Secret holding that key" }}
{{- end }}
{{- if not (has .Values.podAntiAffinity (list "preferred" "required" "none")) }}
{{- fail "podAntiAffinity: one of preferred, required, none" }}
{{- end }}
{{- end }}
