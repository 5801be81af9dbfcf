{{/* Names, labels, images, secret references and the checks every render runs. */}}

{{- define "flow-like.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flow-like.fullname" -}}
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

{{/* Selector labels of one component: include "flow-like.selectorLabels" (list . "api") */}}
{{- define "flow-like.selectorLabels" -}}
{{- $ctx := index . 0 -}}
app.kubernetes.io/name: {{ include "flow-like.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "flow-like.labels" -}}
{{- $ctx := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $ctx.Chart.Name $ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "flow-like.selectorLabels" . }}
app.kubernetes.io/part-of: flow-like
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
{{- end }}

{{/* Image of one of the three binaries: include "flow-like.image" (list . .Values.api.image) */}}
{{- define "flow-like.image" -}}
{{- $ctx := index . 0 -}}
{{- printf "%s:%s" (index . 1).repository (default $ctx.Chart.AppVersion $ctx.Values.image.tag) }}
{{- end }}

{{- define "flow-like.postgresqlInternal" -}}
{{- if not .Values.postgresql.external.existingSecret }}true{{ end }}
{{- end }}

{{- define "flow-like.redisInternal" -}}
{{- if not .Values.redis.external.existingSecret }}true{{ end }}
{{- end }}

{{/* Secret and key holding DATABASE_URL. */}}
{{- define "flow-like.databaseUrlRef" -}}
secretKeyRef:
{{- if include "flow-like.postgresqlInternal" . }}
  name: {{ include "flow-like.fullname" . }}-postgresql
  key: DATABASE_URL
{{- else }}
  name: {{ .Values.postgresql.external.existingSecret }}
  key: {{ .Values.postgresql.external.urlKey }}
{{- end }}
{{- end }}

{{/* Secret and key holding REDIS_URL of a component: include "flow-like.redisUrlRef" (list . "api") */}}
{{- define "flow-like.redisUrlRef" -}}
{{- $ctx := index . 0 -}}
{{- $component := index . 1 -}}
secretKeyRef:
{{- if include "flow-like.redisInternal" $ctx }}
  name: {{ include "flow-like.fullname" $ctx }}-redis
  key: {{ $component }}-url
{{- else }}
  name: {{ $ctx.Values.redis.external.existingSecret }}
  key: {{ index $ctx.Values.redis.external (printf "%sUrlKey" $component) }}
{{- end }}
{{- end }}

{{- define "flow-like.s3SecretName" -}}
{{- default (printf "%s-s3" (include "flow-like.fullname" .)) .Values.s3.existingSecret }}
{{- end }}

{{- define "flow-like.executorSecretName" -}}
{{- default (printf "%s-executor" (include "flow-like.fullname" .)) .Values.executor.existingSecret }}
{{- end }}

{{- define "flow-like.runtimeClassName" -}}
{{- if .Values.executor.runtimeClassName }}
{{- .Values.executor.runtimeClassName }}
{{- else if .Values.executor.runtimeClass.create }}
{{- .Values.executor.runtimeClass.name }}
{{- end }}
{{- end }}

{{/* Environment shared by the API and the dispatcher: database, Redis, S3 and logging. */}}
{{- define "flow-like.commonEnv" -}}
{{- $ctx := index . 0 -}}
{{- $component := index . 1 -}}
- name: DATABASE_URL
  valueFrom:
    {{- include "flow-like.databaseUrlRef" $ctx | nindent 4 }}
- name: REDIS_URL
  valueFrom:
    {{- include "flow-like.redisUrlRef" (list $ctx $component) | nindent 4 }}
- name: REDIS_PREFIX
  value: {{ $ctx.Values.redis.prefix | quote }}
{{ include "flow-like.s3Env" $ctx }}
{{ include "flow-like.loggingEnv" $ctx }}
{{- end }}

{{- define "flow-like.s3Env" -}}
- name: S3_ENDPOINT
  value: {{ .Values.s3.endpoint | quote }}
- name: S3_REGION
  value: {{ .Values.s3.region | quote }}
- name: S3_META_BUCKET
  value: {{ .Values.s3.metaBucket | quote }}
- name: S3_CONTENT_BUCKET
  value: {{ .Values.s3.contentBucket | quote }}
- name: S3_FORCE_PATH_STYLE
  value: {{ .Values.s3.forcePathStyle | quote }}
- name: S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "flow-like.s3SecretName" . }}
      key: {{ .Values.s3.accessKeyIdKey }}
- name: S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "flow-like.s3SecretName" . }}
      key: {{ .Values.s3.secretAccessKeyKey }}
{{- end }}

{{- define "flow-like.loggingEnv" -}}
- name: RUST_LOG
  value: {{ .Values.logging.filter | quote }}
- name: LOG_FORMAT
  value: {{ .Values.logging.format | quote }}
{{- end }}

{{/*
Returns the value of `key` in the Secret `secret` of the release namespace when it exists (so generated passwords
survive upgrades), otherwise a new random alphanumeric value. `helm template` has no cluster, so it renders a new
value each time. Alphanumeric values need no URL encoding inside redis:// and postgres:// URLs.
*/}}
{{- define "flow-like.stableRandom" -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .secret -}}
{{- if and $existing $existing.data (hasKey $existing.data .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum 40 -}}
{{- end -}}
{{- end }}

{{/* Fails the render with every missing or inconsistent setting named. */}}
{{- define "flow-like.validate" -}}
{{- $missing := list -}}
{{- range $key := list "endpoint" "region" "metaBucket" "contentBucket" }}
{{- if not (index $.Values.s3 $key) }}{{ $missing = append $missing (printf "s3.%s" $key) }}{{ end }}
{{- end }}
{{- if not .Values.s3.existingSecret }}
{{- if not .Values.s3.accessKeyId }}{{ $missing = append $missing "s3.accessKeyId (or s3.existingSecret)" }}{{ end }}
{{- if not .Values.s3.secretAccessKey }}{{ $missing = append $missing "s3.secretAccessKey (or s3.existingSecret)" }}{{ end }}
{{- end }}
{{- if $missing }}
{{- fail (printf "flow-like requires S3-compatible storage; missing: %s. Set them with --set or a values file (see docs/install-kubernetes.md, section \"S3 settings\")." (join ", " $missing)) }}
{{- end }}
{{- if and .Values.redis.external.existingSecret (not .Values.executor.existingSecret) }}
{{- fail "redis.external.existingSecret is set, so executor.existingSecret is required: a Secret with REDIS_URL (a Redis user that may only XADD to <prefix>:status*), S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY for the executor Jobs." }}
{{- end }}
{{- if le (int .Values.dispatcher.terminationGracePeriodSeconds) (int .Values.dispatcher.drainTimeoutSecs) }}
{{- fail (printf "dispatcher.terminationGracePeriodSeconds (%d) must be longer than dispatcher.drainTimeoutSecs (%d), or Kubernetes kills dispatchers before they hand back their work." (int .Values.dispatcher.terminationGracePeriodSeconds) (int .Values.dispatcher.drainTimeoutSecs)) }}
{{- end }}
{{- if le (int .Values.api.terminationGracePeriodSeconds) (int .Values.api.shutdownGraceSecs) }}
{{- fail (printf "api.terminationGracePeriodSeconds (%d) must be longer than api.shutdownGraceSecs (%d)." (int .Values.api.terminationGracePeriodSeconds) (int .Values.api.shutdownGraceSecs)) }}
{{- end }}
{{- end }}

{{/* NetworkPolicy egress rule: DNS in the cluster DNS namespace. */}}
{{- define "flow-like.np.dns" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .Values.networkPolicy.dnsNamespace }}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}

{{/* NetworkPolicy egress rule to CIDRs on ports: include "flow-like.np.cidrs" (dict "cidrs" ... "ports" ...) */}}
{{- define "flow-like.np.cidrs" -}}
- to:
    {{- range .cidrs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    {{- range .ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}

{{- define "flow-like.np.postgresql" -}}
{{- if include "flow-like.postgresqlInternal" . -}}
- to:
    - podSelector:
        matchLabels:
          {{- include "flow-like.selectorLabels" (list . "postgresql") | nindent 10 }}
  ports:
    - port: 5432
      protocol: TCP
{{- else -}}
{{- include "flow-like.np.cidrs" .Values.networkPolicy.externalPostgresql }}
{{- end }}
{{- end }}

{{- define "flow-like.np.redis" -}}
{{- if include "flow-like.redisInternal" . -}}
- to:
    - podSelector:
        matchLabels:
          {{- include "flow-like.selectorLabels" (list . "redis") | nindent 10 }}
  ports:
    - port: 6379
      protocol: TCP
{{- else -}}
{{- include "flow-like.np.cidrs" .Values.networkPolicy.externalRedis }}
{{- end }}
{{- end }}
