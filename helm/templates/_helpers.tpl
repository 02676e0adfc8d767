{{/* Chart name, overridable. */}}
{{- define "seasonrec.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Release-qualified name. Ray object names stay within 40 characters: KubeRay derives
Service and pod names from them, and those must fit 63.
*/}}
{{- define "seasonrec.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "seasonrec.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "seasonrec.labels" -}}
helm.sh/chart: {{ include "seasonrec.chart" . }}
{{ include "seasonrec.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels a selector matches on; add app.kubernetes.io/component per workload. */}}
{{- define "seasonrec.selectorLabels" -}}
app.kubernetes.io/name: {{ include "seasonrec.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* `ray start` parameters: KubeRay takes strings only, so `--set ...num-cpus=4` is quoted here. */}}
{{- define "seasonrec.rayStartParams" -}}
{{- if . }}
{{- range $i, $k := keys . | sortAlpha }}
{{- if $i }}{{ "\n" }}{{ end }}
{{- $k }}: {{ index $ $k | toString | quote }}
{{- end }}
{{- else -}}
{}
{{- end }}
{{- end }}

{{/* An image reference from {repository, tag, digest}: a digest pins the exact bytes, so it wins over the tag. */}}
{{- define "seasonrec.imageRef" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .tag .image.tag) }}
{{- end }}
{{- end }}

{{- define "seasonrec.image" -}}
{{- include "seasonrec.imageRef" (dict "image" .Values.image "tag" .Chart.AppVersion) }}
{{- end }}

{{- define "seasonrec.tritonName" -}}
{{- printf "%s-triton" (include "seasonrec.fullname" .) }}
{{- end }}

{{- define "seasonrec.redisName" -}}
{{- printf "%s-redis" (include "seasonrec.fullname" .) }}
{{- end }}

{{- define "seasonrec.storageClaim" -}}
{{- default (printf "%s-data" (include "seasonrec.fullname" .)) .Values.storage.existingClaim }}
{{- end }}

{{- define "seasonrec.redisHostPort" -}}
{{- if .Values.redis.enabled }}
{{- printf "%s:6379" (include "seasonrec.redisName" .) }}
{{- else }}
{{- required "redis.external.host is required when redis.enabled is false" .Values.redis.external.host }}:{{ .Values.redis.external.port }}
{{- end }}
{{- end }}

{{/*
Secrets. Each one is either named by the operator (existingSecret) or made by the chart with a
random value that `lookup` carries over from the live Secret, so an upgrade never rotates it.
*/}}
{{- define "seasonrec.redisSecret" -}}
{{- if .Values.redis.auth.existingSecret }}
{{- .Values.redis.auth.existingSecret }}
{{- else if .Values.redis.enabled }}
{{- printf "%s-redis" (include "seasonrec.fullname" .) }}
{{- else }}
{{- fail "redis.auth.existingSecret is required when redis.auth.enabled is true with an external Redis: the chart cannot know its password" }}
{{- end }}
{{- end }}

{{- define "seasonrec.rayAuthSecret" -}}
{{- default (printf "%s-ray-auth" (include "seasonrec.fullname" .)) .Values.ray.auth.existingSecret }}
{{- end }}

{{- define "seasonrec.apiSecret" -}}
{{- default (printf "%s-api" (include "seasonrec.fullname" .)) .Values.serve.auth.existingSecret }}
{{- end }}

{{- define "seasonrec.privacySecret" -}}
{{- default (printf "%s-privacy" (include "seasonrec.fullname" .)) .Values.privacy.existingSecret }}
{{- end }}

{{- define "seasonrec.tritonSecret" -}}
{{- default (printf "%s-triton" (include "seasonrec.fullname" .)) .Values.triton.modelControl.existingSecret }}
{{- end }}

{{/* Takes a dict: root, name, key. */}}
{{- define "seasonrec.secretValue" -}}
{{- $live := lookup "v1" "Secret" .root.Release.Namespace .name }}
{{- $data := (and $live $live.data) | default dict }}
{{- if hasKey $data .key }}
{{- index $data .key | b64dec }}
{{- else }}
{{- randAlphaNum 40 }}
{{- end }}
{{- end }}

{{- define "seasonrec.redisPasswordEnv" -}}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "seasonrec.redisSecret" . }}
      key: {{ .Values.redis.auth.existingSecretPasswordKey }}
{{- end }}

{{/* KubeRay's key for the token (RAY_AUTH_TOKEN_SECRET_KEY): the operator reads it too, for its dashboard calls. */}}
{{- define "seasonrec.rayAuthEnv" -}}
{{- if .Values.ray.auth.enabled }}
- name: RAY_AUTH_MODE
  value: token
- name: RAY_AUTH_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "seasonrec.rayAuthSecret" . }}
      key: auth_token
{{- end }}
{{- end }}

{{/* On every Ray cluster: KubeRay then authenticates its own dashboard calls and the RayJob submitter. */}}
{{- define "seasonrec.rayAuthOptions" -}}
{{- if .Values.ray.auth.enabled }}
authOptions:
  mode: token
  secretName: {{ include "seasonrec.rayAuthSecret" . }}
{{- end }}
{{- end }}

{{/*
Pod and container security. Takes a dict: root, user ({runAsUser, runAsGroup[, fsGroup]}).
Every container gets a writable emptyDir at /tmp, so the root filesystem can stay read-only.
*/}}
{{- define "seasonrec.podSecurityContext" -}}
securityContext:
  runAsNonRoot: true
  {{- toYaml .user | nindent 2 }}
  seccompProfile:
    type: RuntimeDefault
{{- end }}

{{- define "seasonrec.containerSecurityContext" -}}
securityContext:
  runAsNonRoot: true
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: {{ .Values.securityContext.readOnlyRootFilesystem }}
  capabilities:
    drop: ["ALL"]
  seccompProfile:
    type: RuntimeDefault
{{- end }}

{{- define "seasonrec.tmpVolume" -}}
- name: tmp
  emptyDir: {}
{{- end }}

{{- define "seasonrec.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* Ray pods of this release, by component: what the NetworkPolicies and budgets select. */}}
{{- define "seasonrec.podsOf" -}}
podSelector:
  matchLabels:
    {{- include "seasonrec.selectorLabels" .root | nindent 4 }}
  matchExpressions:
    - key: app.kubernetes.io/component
      operator: In
      values: {{ toJson .components }}
{{- end }}

{{/*
Environment of every seasonrec process. The Redis password is a secret reference that
seasonrec adds to the connection only when it opens the store, so it is in no file.
*/}}
{{- define "seasonrec.appEnv" -}}
- name: SEASONREC_CONFIG
  value: /etc/seasonrec/settings.yaml
- name: SEASONREC__PATHS__DATA_DIR
  value: /var/lib/seasonrec/data
- name: SEASONREC__SERVING__RULES_PATH
  value: /etc/seasonrec/rules/rules.yaml
- name: SEASONREC__FEAST__PROFILE
  value: redis
- name: SEASONREC__FEAST__STORE_YAML
  value: /etc/seasonrec/feast/feature_store.yaml
- name: SEASONREC__FEAST__REDIS_CONNECTION
  value: {{ include "seasonrec.redisHostPort" . | quote }}
{{- if .Values.redis.auth.enabled }}
- name: SEASONREC__FEAST__REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "seasonrec.redisSecret" . }}
      key: {{ .Values.redis.auth.existingSecretPasswordKey }}
{{- end }}
{{- if (.Values.settings.privacy | default dict).pseudonymize }}
- name: SEASONREC__PRIVACY__KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "seasonrec.privacySecret" . }}
      key: {{ .Values.privacy.existingSecretKey }}
{{- end }}
- name: SEASONREC__TRITON__HOST
  value: {{ include "seasonrec.tritonName" . }}
- name: SEASONREC__TRITON__GRPC_PORT
  value: "8001"
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Config files as one projected volume at /etc/seasonrec. No subPath anywhere: the kubelet
swaps the whole directory when a ConfigMap changes, which is what lets rules.yaml roll
out to running ReRankers without a restart.
*/}}
{{- define "seasonrec.appVolumes" -}}
- name: config
  projected:
    sources:
      - configMap:
          name: {{ include "seasonrec.fullname" . }}-settings
          items:
            - key: settings.yaml
              path: settings.yaml
      - configMap:
          name: {{ include "seasonrec.fullname" . }}-rules
          items:
            - key: rules.yaml
              path: rules/rules.yaml
      - configMap:
          name: {{ include "seasonrec.fullname" . }}-feast
          items:
            - key: feature_store.yaml
              path: feast/feature_store.yaml
- name: data
  persistentVolumeClaim:
    claimName: {{ include "seasonrec.storageClaim" . }}
{{- end }}

{{- define "seasonrec.appVolumeMounts" -}}
- name: config
  mountPath: /etc/seasonrec
  readOnly: true
- name: data
  mountPath: /var/lib/seasonrec
{{- end }}

{{/* Training clusters see Triton's repository (type pvc), where ray_jobs/export.py writes new versions;
the Serve pods see it read-only, to read each live version's vocabulary. */}}
{{- define "seasonrec.exportsModels" -}}
{{- if and .Values.triton.enabled (eq .Values.triton.modelRepository.type "pvc") }}true{{ end }}
{{- end }}

{{- define "seasonrec.modelsVolume" -}}
- name: models
  persistentVolumeClaim:
    claimName: {{ required "triton.modelRepository.existingClaim is required when triton.modelRepository.type is pvc" .Values.triton.modelRepository.existingClaim }}
{{- end }}

{{/* Restart the Ray pods when settings change (rules reload live, so they are left out). */}}
{{- define "seasonrec.settingsChecksum" -}}
checksum/settings: {{ include (print $.Template.BasePath "/configmap-settings.yaml") . | sha256sum }}
{{- end }}

{{/*
A seasonrec container of a Ray pod: image, env, config and shared storage. Takes a dict: root, name,
resources, ports, models ("rw" for the training clusters, which export into it; "ro" for Serve), env (extra env, YAML).
*/}}
{{- define "seasonrec.rayContainer" -}}
{{- $ := .root -}}
- name: {{ .name }}
  image: {{ include "seasonrec.image" $ }}
  imagePullPolicy: {{ $.Values.image.pullPolicy }}
  workingDir: {{ $.Values.image.workdir }}
  {{- include "seasonrec.containerSecurityContext" $ | nindent 2 }}
  env:
    {{- include "seasonrec.rayAuthEnv" $ | nindent 4 }}
    {{- include "seasonrec.appEnv" $ | nindent 4 }}
    {{- with .env }}
    {{- . | trim | nindent 4 }}
    {{- end }}
  volumeMounts:
    {{- include "seasonrec.appVolumeMounts" $ | nindent 4 }}
    {{- include "seasonrec.tmpMount" $ | nindent 4 }}
    {{- if .models }}
    - name: models
      mountPath: /models
      readOnly: {{ eq .models "ro" }}
    {{- end }}
  {{- with .ports }}
  ports:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{- define "seasonrec.headPorts" -}}
- name: gcs-server
  containerPort: 6379
- name: dashboard
  containerPort: 8265
- name: client
  containerPort: 10001
{{- end }}

{{/* Head group of the training clusters (RayJob and standalone RayCluster). */}}
{{- define "seasonrec.trainHeadGroup" -}}
rayStartParams: {}
template:
  metadata:
    labels:
      {{- include "seasonrec.labels" . | nindent 6 }}
      app.kubernetes.io/component: train-head
    annotations:
      {{- include "seasonrec.settingsChecksum" . | nindent 6 }}
  spec:
    {{- include "seasonrec.podSecurityContext" (dict "user" .Values.securityContext.ray) | nindent 4 }}
    {{- with .Values.imagePullSecrets }}
    imagePullSecrets:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    containers:
      {{- include "seasonrec.rayContainer" (dict "root" . "name" "ray-head" "resources" .Values.trainHead.resources "ports" (include "seasonrec.headPorts" . | fromYamlArray) "models" (and (include "seasonrec.exportsModels" .) "rw")) | nindent 6 }}
    volumes:
      {{- include "seasonrec.appVolumes" . | nindent 6 }}
      {{- include "seasonrec.tmpVolume" . | nindent 6 }}
      {{- if include "seasonrec.exportsModels" . }}
      {{- include "seasonrec.modelsVolume" . | nindent 6 }}
      {{- end }}
{{- end }}

{{/* The GPU worker group, written once for the RayJob's cluster and the standalone RayCluster. */}}
{{- define "seasonrec.gpuWorkerGroup" -}}
{{- $gpu := dict "nvidia.com/gpu" .Values.gpuWorkers.gpusPerPod }}
{{- $resources := deepCopy .Values.gpuWorkers.resources }}
{{- $_ := set $resources "limits" (merge $gpu (default (dict) $resources.limits)) -}}
- groupName: {{ .Values.gpuWorkers.groupName }}
  replicas: {{ .Values.gpuWorkers.replicas }}
  minReplicas: {{ .Values.gpuWorkers.minReplicas }}
  maxReplicas: {{ .Values.gpuWorkers.maxReplicas }}
  rayStartParams: {{- include "seasonrec.rayStartParams" .Values.gpuWorkers.rayStartParams | nindent 4 }}
  template:
    metadata:
      labels:
        {{- include "seasonrec.labels" . | nindent 8 }}
        app.kubernetes.io/component: gpu-worker
      annotations:
        {{- include "seasonrec.settingsChecksum" . | nindent 8 }}
    spec:
      {{- include "seasonrec.podSecurityContext" (dict "user" .Values.securityContext.ray) | nindent 6 }}
      {{- with .Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.gpuWorkers.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.gpuWorkers.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        {{- include "seasonrec.rayContainer" (dict "root" . "name" "ray-worker" "resources" $resources "models" (and (include "seasonrec.exportsModels" .) "rw")) | nindent 8 }}
      volumes:
        {{- include "seasonrec.appVolumes" . | nindent 8 }}
        {{- include "seasonrec.tmpVolume" . | nindent 8 }}
        {{- if include "seasonrec.exportsModels" . }}
        {{- include "seasonrec.modelsVolume" . | nindent 8 }}
        {{- end }}
{{- end }}

{{/* Env of the Serve pods: the API's write token (only they need it) and Ray Serve's fast request path (serve.fastPath). */}}
{{- define "seasonrec.serveEnv" -}}
- name: SEASONREC__AUTH__WRITE_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "seasonrec.apiSecret" . }}
      key: {{ .Values.serve.auth.existingSecretKey }}
{{- if .Values.serve.fastPath }}
- name: RAY_SERVE_ENABLE_HA_PROXY
  value: "1"
- name: RAY_SERVE_THROUGHPUT_OPTIMIZED
  value: "1"
{{- end }}
{{- end }}

{{/* The autoscaler sidecar KubeRay adds to a head: hardened like the rest; KubeRay mounts its logs at /tmp/ray. */}}
{{- define "seasonrec.autoscalerOptions" -}}
autoscalerOptions:
  {{- include "seasonrec.containerSecurityContext" . | nindent 2 }}
  volumeMounts:
    {{- include "seasonrec.tmpMount" . | nindent 4 }}
{{- end }}

{{/* Serve's request_timeout_s: a second above settings.serving.deadline_ms (serving/stack.py, serve_timeout_s). */}}
{{- define "seasonrec.serveTimeout" -}}
{{- $deadline := (.Values.settings.serving | default dict).deadline_ms | default 1000 -}}
{{- addf (divf $deadline 1000) 1 -}}
{{- end }}
