{{/* Names ----------------------------------------------------------------------------------------------- */}}
{{- define "broker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "broker.fullname" -}}
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

{{- define "broker.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels: call with (dict "ctx" $ "component" "web") ------------------------------------------------- */}}
{{- define "broker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "broker.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{- define "broker.labels" -}}
helm.sh/chart: {{ include "broker.chart" .ctx }}
{{ include "broker.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: webhook-broker
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Objects' names --------------------------------------------------------------------------------------- */}}
{{- define "broker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "broker.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create=false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "broker.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else if .Values.secrets.create }}
{{- include "broker.fullname" . }}
{{- end }}
{{- end }}

{{- define "broker.redisName" -}}
{{- printf "%s-redis" (include "broker.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "broker.redisAddress" -}}
{{- if eq .Values.redis.mode "bundled" }}
{{- printf "%s.%s.svc:%v" (include "broker.redisName" .) .Release.Namespace .Values.redis.bundled.port }}
{{- else }}
{{- .Values.redis.external.address }}
{{- end }}
{{- end }}

{{/* rq's pending-job lists the worker consumes, as a JSON list (include returns strings). */}}
{{- define "broker.queueLists" -}}
{{- $lists := .Values.worker.autoscaling.keda.listNames }}
{{- if not $lists }}
{{- $events := default "broker" .Values.config.BROKER_QUEUE_NAME }}
{{- $notify := default "broker-notify" .Values.config.BROKER_NOTIFY_QUEUE_NAME }}
{{- $lists = list (printf "rq:queue:%s" $events) (printf "rq:queue:%s" $notify) }}
{{- end }}
{{- toJson $lists }}
{{- end }}

{{- define "broker.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Checks that cannot be expressed in values.schema.json --------------------------------------------------- */}}
{{- define "broker.validate" -}}
{{- if and .Values.secrets.existingSecret .Values.secrets.create }}
{{- fail "set either secrets.existingSecret or secrets.create, not both" }}
{{- end }}
{{- if eq .Values.redis.mode "external" }}
{{- if not (include "broker.secretName" .) }}
{{- fail "redis.mode=external reads BROKER_REDIS_URL from a Secret: set secrets.existingSecret (or secrets.create for dev)" }}
{{- end }}
{{- if and .Values.secrets.create (not (get .Values.secrets.values "BROKER_REDIS_URL")) }}
{{- fail "redis.mode=external with secrets.create needs secrets.values.BROKER_REDIS_URL" }}
{{- end }}
{{- if and .Values.worker.autoscaling.keda.enabled (not .Values.redis.external.address) }}
{{- fail "worker.autoscaling.keda.enabled with redis.mode=external needs redis.external.address (host:port)" }}
{{- end }}
{{- end }}
{{- if and (eq .Values.redis.mode "bundled") .Values.redis.bundled.auth.enabled (not (include "broker.secretName" .)) }}
{{- fail "redis.bundled.auth.enabled reads the password from the broker Secret: set secrets.existingSecret or secrets.create" }}
{{- end }}
{{- if and (eq .Values.redis.mode "bundled") .Values.redis.bundled.auth.enabled .Values.secrets.create (not (get .Values.secrets.values .Values.redis.bundled.auth.secretKey)) }}
{{- fail (printf "redis.bundled.auth.enabled with secrets.create needs secrets.values.%s" .Values.redis.bundled.auth.secretKey) }}
{{- end }}
{{- range $key, $_ := .Values.config }}
{{- if has $key (list "BROKER_HOST" "BROKER_PORT" "BROKER_DATA_DIR" "BROKER_ARGOCD_NAMESPACE" "BROKER_REDIS_URL") }}
{{- fail (printf "config.%s is set by the chart (web.port, dataDir.path, argocd.namespace, redis.*); remove it" $key) }}
{{- end }}
{{- end }}
{{- end }}

{{/* Pod pieces shared by web and worker ---------------------------------------------------------------------- */}}
{{- define "broker.podAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if .Values.secrets.create }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Environment: ConfigMap via envFrom, secrets one by one (so the Secret may hold other keys too). */}}
{{- define "broker.env" -}}
- name: HOME
  value: /tmp
{{- $secret := include "broker.secretName" . }}
{{- $bundled := eq .Values.redis.mode "bundled" }}
{{- if $secret }}
{{- range $env, $key := .Values.secrets.keys }}
{{- if not (and $bundled (eq $env "BROKER_REDIS_URL")) }}
- name: {{ $env }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
      optional: {{ ne $env "BROKER_REDIS_URL" }}
{{- end }}
{{- end }}
{{- end }}
{{- if $bundled }}
{{- $host := printf "%s:%v" (include "broker.redisName" .) .Values.redis.bundled.port }}
{{- if .Values.redis.bundled.auth.enabled }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.redis.bundled.auth.secretKey }}
- name: BROKER_REDIS_URL
  value: "redis://:$(REDIS_PASSWORD)@{{ $host }}/0"
{{- else }}
- name: BROKER_REDIS_URL
  value: "redis://{{ $host }}/0"
{{- end }}
{{- end }}
{{- end }}

{{- define "broker.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpDir.sizeLimit }}
- name: data
  emptyDir:
    sizeLimit: {{ .Values.dataDir.sizeLimit }}
{{- end }}

{{- define "broker.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: data
  mountPath: {{ .Values.dataDir.path }}
{{- end }}

{{- define "broker.podSpecCommon" -}}
serviceAccountName: {{ include "broker.serviceAccountName" . }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
volumes:
  {{- include "broker.volumes" . | nindent 2 }}
{{- end }}

{{/* How the worker scales: "keda" (queue length), "hpa" (CPU) or "" (fixed replicaCount). */}}
{{- define "broker.workerScaler" -}}
{{- if .Values.worker.autoscaling.keda.enabled }}keda
{{- else if .Values.worker.autoscaling.enabled }}hpa
{{- end }}
{{- end }}
