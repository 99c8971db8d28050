{{/*
Chart name, truncated to the 63 characters of a DNS label.
*/}}
{{- define "stolon.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the prefix of every resource name. Kept short enough (42) that
"<fullname>-keeper-NN" and the StatefulSets' controller-revision-hash labels fit in 63 characters.
*/}}
{{- define "stolon.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 42 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 42 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 42 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Name of one component's resources: (dict "root" $ "component" "keeper").
*/}}
{{- define "stolon.componentName" -}}
{{- printf "%s-%s" (include "stolon.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "stolon.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource of the release.
*/}}
{{- define "stolon.labels" -}}
helm.sh/chart: {{ include "stolon.chart" . }}
{{ include "stolon.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels of the release.
*/}}
{{- define "stolon.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stolon.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of one component's resources: (dict "root" $ "component" "keeper").
*/}}
{{- define "stolon.componentLabels" -}}
{{ include "stolon.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Selector labels of one component: (dict "root" $ "component" "keeper").
*/}}
{{- define "stolon.componentSelectorLabels" -}}
{{ include "stolon.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
The stolon-rs image.
*/}}
{{- define "stolon.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}

{{/*
Name of the ServiceAccount.
*/}}
{{- define "stolon.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stolon.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The stolon cluster name (--cluster-name).
*/}}
{{- define "stolon.clusterName" -}}
{{- default (include "stolon.fullname" .) .Values.clusterName }}
{{- end }}

{{/*
Name of the Secret holding the PostgreSQL passwords.
*/}}
{{- define "stolon.secretName" -}}
{{- default (include "stolon.fullname" .) .Values.auth.existingSecret }}
{{- end }}

{{/*
Comma-separated store endpoints: the bundled etcd's client Service, or store.endpoints.
*/}}
{{- define "stolon.storeEndpoints" -}}
{{- if .Values.etcd.enabled }}
{{- printf "http://%s:%v" (include "stolon.componentName" (dict "root" . "component" "etcd")) .Values.etcd.clientPort }}
{{- else }}
{{- required "store.endpoints is required when etcd.enabled is false (comma-separated etcd v3 client URLs)" .Values.store.endpoints }}
{{- end }}
{{- end }}

{{/*
Environment variables of the common store flags for one binary: (dict "root" $ "prefix" "STKEEPER").
*/}}
{{- define "stolon.storeEnv" -}}
{{- $root := .root -}}
- name: {{ .prefix }}_CLUSTER_NAME
  value: {{ include "stolon.clusterName" $root | quote }}
- name: {{ .prefix }}_STORE_BACKEND
  value: {{ $root.Values.store.backend | quote }}
- name: {{ .prefix }}_STORE_ENDPOINTS
  value: {{ include "stolon.storeEndpoints" $root | quote }}
- name: {{ .prefix }}_STORE_PREFIX
  value: {{ $root.Values.store.prefix | quote }}
{{- with $root.Values.store.timeout }}
- name: {{ $.prefix }}_STORE_TIMEOUT
  value: {{ . | quote }}
{{- end }}
{{- if and $root.Values.store.tls.enabled (not $root.Values.etcd.enabled) }}
- name: {{ .prefix }}_STORE_CA_FILE
  value: /etc/stolon/store-tls/ca.crt
- name: {{ .prefix }}_STORE_CERT_FILE
  value: /etc/stolon/store-tls/tls.crt
- name: {{ .prefix }}_STORE_KEY
  value: /etc/stolon/store-tls/tls.key
{{- end }}
- name: {{ .prefix }}_LOG_LEVEL
  value: {{ $root.Values.logLevel | quote }}
{{- end }}

{{/*
The log format variable, for the daemons and stolonctl alike: (dict "root" $ "prefix" "STKEEPER").
*/}}
{{- define "stolon.logFormatEnv" -}}
- name: {{ .prefix }}_LOG_FORMAT
  value: {{ .root.Values.logFormat | quote }}
{{- end }}

{{/*
Whether the store TLS Secret is mounted.
*/}}
{{- define "stolon.storeTLS" -}}
{{- if and .Values.store.tls.enabled (not .Values.etcd.enabled) }}true{{- end }}
{{- end }}

{{/*
Volume of the store TLS Secret (only when stolon.storeTLS).
*/}}
{{- define "stolon.storeTLSVolume" -}}
- name: store-tls
  secret:
    secretName: {{ required "store.tls.secretName is required when store.tls.enabled is true" .Values.store.tls.secretName }}
    defaultMode: 0440
    items:
      - key: {{ .Values.store.tls.caKey }}
        path: ca.crt
      - key: {{ .Values.store.tls.certKey }}
        path: tls.crt
      - key: {{ .Values.store.tls.keyKey }}
        path: tls.key
{{- end }}

{{/*
Affinity of a component: its own affinity when set, else the generated pod anti-affinity.
(dict "root" $ "component" "keeper" "values" .Values.keeper)
*/}}
{{- define "stolon.affinity" -}}
{{- $v := .values }}
{{- if $v.affinity }}
{{- toYaml $v.affinity }}
{{- else if eq $v.podAntiAffinity "hard" }}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: {{ $v.podAntiAffinityTopologyKey }}
      labelSelector:
        matchLabels:
          {{- include "stolon.componentSelectorLabels" . | nindent 10 }}
{{- else if eq $v.podAntiAffinity "soft" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: {{ $v.podAntiAffinityTopologyKey }}
        labelSelector:
          matchLabels:
            {{- include "stolon.componentSelectorLabels" . | nindent 12 }}
{{- else if ne $v.podAntiAffinity "none" }}
{{- fail (printf "%s.podAntiAffinity must be soft, hard or none, not %q" .component $v.podAntiAffinity) }}
{{- end }}
{{- end }}

{{/*
Storage class line of a volumeClaimTemplate: "" keeps the default class, "-" sets none.
*/}}
{{- define "stolon.storageClass" -}}
{{- if . }}
{{- if eq "-" . }}
storageClassName: ""
{{- else }}
storageClassName: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}
