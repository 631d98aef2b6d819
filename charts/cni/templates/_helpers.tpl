{{- define "cni.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}{{- end }}
{{- define "cni.labels" -}}
app: ambit-cni-node
app.kubernetes.io/name: ambit-cni-node
app.kubernetes.io/part-of: ambit
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
istio.io/dataplane-mode: none
{{- end }}
