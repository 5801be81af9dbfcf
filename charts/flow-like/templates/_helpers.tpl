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

{{/*
An image reference: include "flow-like.image" (list . .Values.api.image). global.imageRegistry replaces the
image's registry; a digest pins the image instead of the tag; the tag of the three binaries defaults to appVersion.
*/}}
{{- define "flow-like.image" -}}
{{- $ctx := index . 0 -}}
{{- $img := index . 1 -}}
{{- $registry := default $img.registry $ctx.Values.global.imageRegistry -}}
{{- $repo := ternary (printf "%s/%s" $registry $img.repository) $img.repository (ne $registry "") -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $repo $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (toString (default $ctx.Chart.AppVersion $img.tag)) -}}
{{- end -}}
{{- end }}

{{/* Name of a component's service account: include "flow-like.serviceAccountName" (list . "api") */}}
{{- define "flow-like.serviceAccountName" -}}
{{- $ctx := index . 0 -}}
{{- $component := index . 1 -}}
{{- $sa := (index $ctx.Values $component).serviceAccount -}}
{{- if $sa.create -}}
{{- default (printf "%s-%s" (include "flow-like.fullname" $ctx) $component) $sa.name -}}
{{- else -}}
{{- default "default" $sa.name -}}
{{- end -}}
{{- end }}

{{/* "true" when the security contexts leave uid, gid and fsGroup to OpenShift. */}}
{{- define "flow-like.openshift" -}}
{{- $mode := .Values.global.compatibility.openshift.adaptSecurityContext -}}
{{- if or (eq $mode "force") (and (eq $mode "auto") (.Capabilities.APIVersions.Has "security.openshift.io/v1")) -}}
true
{{- end -}}
{{- end }}

{{/* A pod securityContext, adapted for OpenShift: include "flow-like.podSecurityContext" (list . $context) */}}
{{- define "flow-like.podSecurityContext" -}}
{{- $ctx := index . 0 -}}
{{- $sc := deepCopy (index . 1) -}}
{{- if include "flow-like.openshift" $ctx -}}
{{- $sc = omit $sc "runAsUser" "runAsGroup" "fsGroup" -}}
{{- end -}}
{{- toYaml $sc -}}
{{- end }}

{{- define "flow-like.postgresqlInternal" -}}
{{- if not .Values.postgresql.external.existingSecret }}true{{ end }}
{{- end }}

{{- define "flow-like.redisInternal" -}}
{{- if not .Values.redis.external.existingSecret }}true{{ end }}
{{- end }}

{{/*
Where each credential comes from: "values" (the chart renders its Secret), "existing" (the user's Secret) or
"generated" (the secret generator hook creates it once). Empty when the credential is not used.
*/}}
{{- define "flow-like.postgresqlAuthSource" -}}
{{- $a := .Values.postgresql.internal.auth -}}
{{- if include "flow-like.postgresqlInternal" . -}}
{{- if $a.existingSecret }}existing{{ else if $a.password }}values{{ else }}generated{{ end -}}
{{- end -}}
{{- end }}

{{- define "flow-like.redisAuthSource" -}}
{{- $a := .Values.redis.internal.auth -}}
{{- if include "flow-like.redisInternal" . -}}
{{- if $a.existingSecret }}existing{{ else if or $a.apiPassword $a.dispatcherPassword $a.executorPassword $a.probePassword }}values{{ else }}generated{{ end -}}
{{- end -}}
{{- end }}

{{- define "flow-like.adminTokenSource" -}}
{{- $t := .Values.api.adminToken -}}
{{- if $t.existingSecret }}existing{{ else if $t.token }}values{{ else if $t.enabled }}generated{{ end -}}
{{- end }}

{{/* "true" when the secret generator hook has something to create. */}}
{{- define "flow-like.generatorNeeded" -}}
{{- if or (eq (include "flow-like.postgresqlAuthSource" .) "generated") (eq (include "flow-like.redisAuthSource" .) "generated") (eq (include "flow-like.adminTokenSource" .) "generated") -}}
true
{{- end -}}
{{- end }}

{{- define "flow-like.postgresqlSecretName" -}}
{{- default (printf "%s-postgresql" (include "flow-like.fullname" .)) .Values.postgresql.internal.auth.existingSecret -}}
{{- end }}

{{- define "flow-like.postgresqlPasswordKey" -}}
{{- ternary .Values.postgresql.internal.auth.passwordKey "password" (ne .Values.postgresql.internal.auth.existingSecret "") -}}
{{- end }}

{{- define "flow-like.redisSecretName" -}}
{{- default (printf "%s-redis" (include "flow-like.fullname" .)) .Values.redis.internal.auth.existingSecret -}}
{{- end }}

{{- define "flow-like.redisHost" -}}
{{- printf "%s-redis:6379" (include "flow-like.fullname" .) -}}
{{- end }}

{{- define "flow-like.adminTokenSecretName" -}}
{{- default (printf "%s-admin-token" (include "flow-like.fullname" .)) .Values.api.adminToken.existingSecret -}}
{{- end }}

{{/*
DATABASE_URL (and the helper it is composed from). The internal PostgreSQL's URL is composed by Kubernetes from
the password Secret with a dependent variable, $(FLOWLIKE_CHART_POSTGRESQL_PASSWORD), so the password lives in
one Secret only, whether it came from values, an existingSecret or the generator.
*/}}
{{- define "flow-like.databaseUrlEnv" -}}
{{- if include "flow-like.postgresqlInternal" . -}}
{{- $pg := .Values.postgresql.internal -}}
- name: FLOWLIKE_CHART_POSTGRESQL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "flow-like.postgresqlSecretName" . }}
      key: {{ include "flow-like.postgresqlPasswordKey" . }}
- name: DATABASE_URL
  value: {{ printf "postgres://%s:$(FLOWLIKE_CHART_POSTGRESQL_PASSWORD)@%s-postgresql:5432/%s" $pg.username (include "flow-like.fullname" .) $pg.database | quote }}
{{- else -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.postgresql.external.existingSecret }}
      key: {{ .Values.postgresql.external.urlKey }}
{{- end -}}
{{- end }}

{{/* REDIS_URL of a component: include "flow-like.redisUrlEnv" (list . "api") */}}
{{- define "flow-like.redisUrlEnv" -}}
{{- $ctx := index . 0 -}}
{{- $component := index . 1 -}}
{{- if include "flow-like.redisInternal" $ctx -}}
- name: FLOWLIKE_CHART_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "flow-like.redisSecretName" $ctx }}
      key: {{ $component }}-password
- name: REDIS_URL
  value: {{ printf "redis://%s:$(FLOWLIKE_CHART_REDIS_PASSWORD)@%s" $component (include "flow-like.redisHost" $ctx) | quote }}
{{- else -}}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $ctx.Values.redis.external.existingSecret }}
      key: {{ index $ctx.Values.redis.external (printf "%sUrlKey" $component) }}
{{- end -}}
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

{{/* The CA bundle for rediss:// URLs: its mount directory and file. */}}
{{- define "flow-like.redisCaDir" -}}/etc/flow-like/redis-ca{{- end }}

{{- define "flow-like.redisCaFile" -}}
{{- if or .Values.redis.tls.caSecret .Values.redis.tls.caConfigMap -}}
{{- printf "%s/%s" (include "flow-like.redisCaDir" .) .Values.redis.tls.caKey -}}
{{- end -}}
{{- end }}

{{/* Volumes and mounts the chart adds to the API, the dispatchers and executor Jobs (as YAML lists). */}}
{{- define "flow-like.redisCaVolumes" -}}
{{- $t := .Values.redis.tls -}}
{{- if $t.caSecret -}}
- name: redis-ca
  secret:
    secretName: {{ $t.caSecret }}
    items:
      - key: {{ $t.caKey }}
        path: {{ $t.caKey }}
{{- else if $t.caConfigMap -}}
- name: redis-ca
  configMap:
    name: {{ $t.caConfigMap }}
    items:
      - key: {{ $t.caKey }}
        path: {{ $t.caKey }}
{{- end -}}
{{- end }}

{{- define "flow-like.redisCaVolumeMounts" -}}
{{- if include "flow-like.redisCaFile" . -}}
- name: redis-ca
  mountPath: {{ include "flow-like.redisCaDir" . }}
  readOnly: true
{{- end -}}
{{- end }}

{{/* Environment shared by the API and the dispatcher: database, Redis, S3 and logging. */}}
{{- define "flow-like.commonEnv" -}}
{{- $ctx := index . 0 -}}
{{- $component := index . 1 -}}
{{ include "flow-like.databaseUrlEnv" $ctx }}
{{ include "flow-like.redisUrlEnv" (list $ctx $component) }}
- name: REDIS_PREFIX
  value: {{ $ctx.Values.redis.prefix | quote }}
{{- with include "flow-like.redisCaFile" $ctx }}
- name: REDIS_CA_FILE
  value: {{ . | quote }}
{{- end }}
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
{{- if eq .Values.s3.auth "static" }}
{{ include "flow-like.s3KeyEnv" . }}
{{- end }}
{{- end }}

{{/* The static S3 keys, by reference to their Secret. */}}
{{- define "flow-like.s3KeyEnv" -}}
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
Pod annotations of the API and the dispatchers: the user's, plus a checksum of every Secret the chart renders,
so pods restart when one changes. The Secrets hold no random values, so the checksum is stable across renders.
*/}}
{{- define "flow-like.podAnnotations" -}}
{{- $ctx := index . 0 -}}
{{- $annotations := deepCopy (index . 1) -}}
{{- $_ := set $annotations "checksum/secrets" (include (print $ctx.Template.BasePath "/secrets.yaml") $ctx | sha256sum) -}}
{{- toYaml $annotations -}}
{{- end }}

{{/* Fails the render with every missing or inconsistent setting named. */}}
{{- define "flow-like.validate" -}}
{{- $missing := list -}}
{{- $s3 := .Values.s3 -}}
{{- range $key := list "endpoint" "region" "metaBucket" "contentBucket" }}
{{- if not (index $s3 $key) }}{{ $missing = append $missing (printf "s3.%s" $key) }}{{ end }}
{{- end }}
{{- if eq $s3.auth "static" }}
{{- if not $s3.existingSecret }}
{{- if not $s3.accessKeyId }}{{ $missing = append $missing "s3.accessKeyId (or s3.existingSecret, or s3.auth=serviceAccount)" }}{{ end }}
{{- if not $s3.secretAccessKey }}{{ $missing = append $missing "s3.secretAccessKey (or s3.existingSecret, or s3.auth=serviceAccount)" }}{{ end }}
{{- end }}
{{- end }}
{{- if $missing }}
{{- fail (printf "flow-like requires S3-compatible storage; missing: %s. Set them with --set or a values file (see docs/install-kubernetes.md, section \"S3 settings\")." (join ", " $missing)) }}
{{- end }}
{{- if eq $s3.auth "serviceAccount" }}
{{- $given := list -}}
{{- range $key := list "accessKeyId" "secretAccessKey" "existingSecret" }}
{{- if index $s3 $key }}{{ $given = append $given (printf "s3.%s" $key) }}{{ end }}
{{- end }}
{{- if $given }}
{{- fail (printf "s3.auth is serviceAccount (credentials from the pods' identity), but %s is set too: remove it, or set s3.auth=static." (join ", " $given)) }}
{{- end }}
{{- end }}
{{- if and .Values.redis.external.existingSecret (not .Values.executor.existingSecret) }}
{{- fail "redis.external.existingSecret is set, so executor.existingSecret is required: a Secret with REDIS_URL (a Redis user that may only XADD to <prefix>:status*) for the executor Jobs (plus S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY with s3.auth=static)." }}
{{- end }}
{{- $redisSource := include "flow-like.redisAuthSource" . }}
{{- if and (eq $redisSource "existing") (not .Values.executor.existingSecret) }}
{{- fail (printf "redis.internal.auth.existingSecret is set, so executor.existingSecret is required: a Secret with REDIS_URL=redis://executor:<executor-password>@%s for the executor Jobs." (include "flow-like.redisHost" .)) }}
{{- end }}
{{- if eq $redisSource "values" }}
{{- $absent := list -}}
{{- range $user := list "api" "dispatcher" "executor" "probe" }}
{{- if not (index $.Values.redis.internal.auth (printf "%sPassword" $user)) }}{{ $absent = append $absent (printf "redis.internal.auth.%sPassword" $user) }}{{ end }}
{{- end }}
{{- if $absent }}
{{- fail (printf "redis.internal.auth: give all four passwords or none (none: generated once, or redis.internal.auth.existingSecret); missing: %s." (join ", " $absent)) }}
{{- end }}
{{- end }}
{{- if and (include "flow-like.generatorNeeded" .) (not .Values.secretGenerator.enabled) }}
{{- $needed := list -}}
{{- if eq (include "flow-like.postgresqlAuthSource" .) "generated" }}{{ $needed = append $needed "postgresql.internal.auth.password (or .existingSecret)" }}{{ end }}
{{- if eq $redisSource "generated" }}{{ $needed = append $needed "redis.internal.auth.*Password (or .existingSecret, with executor.existingSecret)" }}{{ end }}
{{- if eq (include "flow-like.adminTokenSource" .) "generated" }}{{ $needed = append $needed "api.adminToken.token (or .existingSecret, or api.adminToken.enabled=false)" }}{{ end }}
{{- fail (printf "secretGenerator.enabled is false, so the chart generates no credentials; set %s." (join ", " $needed)) }}
{{- end }}
{{- $openshift := .Values.global.compatibility.openshift.adaptSecurityContext }}
{{- if not (has $openshift (list "auto" "force" "disabled")) }}
{{- /* Helm does not check `global` against values.schema.json. */}}
{{- fail (printf "global.compatibility.openshift.adaptSecurityContext must be auto, force or disabled, not %q." (toString $openshift)) }}
{{- end }}
{{- $tls := .Values.redis.tls }}
{{- if and $tls.caSecret $tls.caConfigMap }}
{{- fail "redis.tls: set caSecret or caConfigMap, not both." }}
{{- end }}
{{- if and (or $tls.caSecret $tls.caConfigMap) (include "flow-like.redisInternal" .) }}
{{- fail "redis.tls.caSecret/caConfigMap apply to an external Redis with rediss:// URLs (redis.external.existingSecret); the internal Redis has no TLS." }}
{{- end }}
{{- range $component := list "api" "dispatcher" "executor" }}
{{- range (index $.Values $component).extraVolumes }}
{{- if or (eq .name "tmp") (and (eq .name "redis-ca") (include "flow-like.redisCaFile" $)) }}
{{- fail (printf "%s.extraVolumes: the volume name %q is the chart's own (its /tmp or the Redis CA); choose another." $component .name) }}
{{- end }}
{{- end }}
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
