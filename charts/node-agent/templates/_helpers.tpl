{{- define "na.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}{{- end }}
{{- define "na.caAddress" -}}{{ .Values.caAddress | default (printf "istiod.%s.svc:15012" .Release.Namespace) }}{{- end }}
{{- define "na.labels" -}}
app: ambit-node
app.kubernetes.io/name: ambit-node
app.kubernetes.io/part-of: ambit
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
istio.io/dataplane-mode: none
sidecar.istio.io/inject: "false"
{{- end }}
