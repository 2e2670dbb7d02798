{{- define "sluice.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sluice.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "sluice.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "sluice.secretName" -}}
{{- default (printf "%s-secrets" (include "sluice.fullname" .)) .Values.existingSecret -}}
{{- end -}}

{{/* The environment every Sluice container gets: the ConfigMap, then the Secret. */}}
{{- define "sluice.envFrom" -}}
- configMapRef:
    name: {{ include "sluice.fullname" . }}-config
- secretRef:
    name: {{ include "sluice.secretName" . }}
{{- end -}}

{{/* A worker Deployment: .root is the chart context, .name the component, .values its block. */}}
{{- define "sluice.worker" -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "sluice.fullname" .root }}-{{ .name }}
  labels:
    {{- include "sluice.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .name }}
spec:
  replicas: {{ .values.replicas }}
  selector:
    matchLabels:
      {{- include "sluice.selector" (dict "root" .root "component" .name) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "sluice.selector" (dict "root" .root "component" .name) | nindent 8 }}
      annotations:
        checksum/config: {{ include (print .root.Template.BasePath "/config.yaml") .root | sha256sum }}
    spec:
      terminationGracePeriodSeconds: {{ .values.terminationGracePeriodSeconds }}
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
      containers:
        - name: {{ .name }}
          image: "{{ .root.Values.image.repository }}:{{ .root.Values.image.tag }}"
          imagePullPolicy: {{ .root.Values.image.pullPolicy }}
          command: ["sh", "-c", {{ .command | quote }}]
          envFrom:
            {{- include "sluice.envFrom" .root | nindent 12 }}
          # arq's health check: the worker's heartbeat key in Redis is fresh.
          livenessProbe:
            exec:
              command: ["python", "-m", "workers", {{ .queue | quote }}, "--check"]
            periodSeconds: 30
            timeoutSeconds: 10
            failureThreshold: 3
          resources:
            {{- toYaml .values.resources | nindent 12 }}
{{- end -}}
