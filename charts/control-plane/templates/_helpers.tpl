{{- define "cp.namespace" -}}{{ .Release.Namespace }}{{- end }}
{{- define "cp.rootNamespace" -}}{{ .Values.meshConfig.rootNamespace | default .Release.Namespace }}{{- end }}
{{- define "cp.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}{{- end }}
{{- define "cp.labels" -}}
app: ambit-operator
app.kubernetes.io/name: ambit-operator
app.kubernetes.io/part-of: ambit
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
istio.io/dataplane-mode: none
{{- end }}
{{- define "cp.selector" -}}
app: ambit-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
{{- /* The MeshConfig the operator reads (Istio's `istio` ConfigMap, key `mesh`). */}}
{{- define "cp.mesh" -}}
{{- $m := deepCopy .Values.meshConfig }}
{{- $_ := set $m "rootNamespace" (include "cp.rootNamespace" .) }}
{{- $dc := $m.defaultConfig | default dict }}
{{- $_ := set $dc "discoveryAddress" (printf "istiod.%s.svc:15012" .Release.Namespace) }}
{{- $_ := set $m "defaultConfig" $dc }}
{{- toYaml $m }}
{{- end }}
