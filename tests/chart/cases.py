"""Values the chart is rendered with: one case per install shape users are told about in the docs."""

import copy

# Distinct, greppable stand-ins for secrets: a test checks none of them leaks outside a Secret.
S3_KEY_ID = "AKIASENTINELKEYID0001"
S3_SECRET = "s3SentinelSecretAccessKey0123456789abcd"

S3 = {
    "endpoint": "https://s3.eu-central-1.amazonaws.com",
    "region": "eu-central-1",
    "metaBucket": "flow-like-meta",
    "contentBucket": "flow-like-content",
    "accessKeyId": S3_KEY_ID,
    "secretAccessKey": S3_SECRET,
}

AUTO = {"s3": S3}

EXTERNAL = {
    "s3": {**{k: v for k, v in S3.items() if k not in ("accessKeyId", "secretAccessKey")}, "existingSecret": "my-s3"},
    "postgresql": {"external": {"existingSecret": "my-postgres"}},
    "redis": {"external": {"existingSecret": "my-redis", "apiUrlKey": "API_REDIS_URL", "dispatcherUrlKey": "DISPATCHER_REDIS_URL"}},
    "executor": {"existingSecret": "my-executor"},
    "api": {"adminToken": {"existingSecret": "my-admin-token"}},
}

KATA = {
    "s3": S3,
    "executor": {
        "runtimeClassName": "kata-qemu",
        "runtimeClass": {"create": True, "name": "kata-qemu", "handler": "kata-qemu",
                         "overhead": {"podFixed": {"cpu": "250m", "memory": "160Mi"}},
                         "scheduling": {"nodeSelector": {"katacontainers.io/kata-runtime": "true"}}},
        "nodeSelector": {"katacontainers.io/kata-runtime": "true"},
        "tolerations": [{"key": "sandbox", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}},
        "priorityClassName": "batch-low",
    },
}

INGRESS_TLS = {
    "s3": S3,
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "certManager": {"clusterIssuer": "letsencrypt-prod"},
        "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "8m"},
        "hosts": [{"host": "flow.example.org", "paths": [{"path": "/", "pathType": "Prefix"}]}],
        "tls": [{"secretName": "flow-like-tls", "hosts": ["flow.example.org"]}],
    },
}

NETWORK_POLICIES = {"s3": S3, "networkPolicy": {"enabled": True}}

NETWORK_POLICIES_EXTERNAL = copy.deepcopy(EXTERNAL)
NETWORK_POLICIES_EXTERNAL["networkPolicy"] = {
    "enabled": True,
    "s3": {"cidrs": ["203.0.113.0/24"], "ports": [443, 9000]},
    "externalPostgresql": {"cidrs": ["10.20.0.5/32"], "ports": [5432]},
    "externalRedis": {"cidrs": ["10.20.0.6/32"], "ports": [6380]},
    "executor": {"extraEgress": [{"to": [{"ipBlock": {"cidr": "198.51.100.0/24"}}], "ports": [{"port": 443, "protocol": "TCP"}]}]},
}

HPA = {"s3": S3, "dispatcher": {"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 20}}}

MIGRATE_ON_START = {"s3": S3, "migrations": {"mode": "onStart"}, "imagePullSecrets": [{"name": "ghcr"}, {"name": "mirror"}]}

# A private CA for rediss:// (managed Redis with TLS), from a Secret.
TLS_REDIS = copy.deepcopy(EXTERNAL)
TLS_REDIS["redis"]["tls"] = {"caSecret": "redis-ca", "caKey": "ca.pem"}

# The same CA from a ConfigMap (e.g. filled by trust-manager).
TLS_REDIS_CONFIGMAP = copy.deepcopy(EXTERNAL)
TLS_REDIS_CONFIGMAP["redis"]["tls"] = {"caConfigMap": "trust-bundle"}

ROLE_ARN = "arn:aws:iam::123456789012:role/flow-like"

# S3 through the pods' identity (IRSA / EKS Pod Identity): no keys anywhere.
S3_SERVICE_ACCOUNT = {
    "s3": {**{k: v for k, v in S3.items() if k not in ("accessKeyId", "secretAccessKey")}, "auth": "serviceAccount"},
    "api": {"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": ROLE_ARN}}},
    "dispatcher": {"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": ROLE_ARN}}},
    "executor": {"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": ROLE_ARN}}},
}

# Auto mode with the user's own Secrets for the internal PostgreSQL and Redis and the admin token.
INTERNAL_EXISTING_SECRETS = {
    "s3": S3,
    "postgresql": {"internal": {"auth": {"existingSecret": "my-pg-auth", "passwordKey": "postgres-password"}}},
    "redis": {"internal": {"auth": {"existingSecret": "my-redis-auth"}}},
    "executor": {"existingSecret": "my-executor"},
    "api": {"adminToken": {"existingSecret": "my-admin-token"}},
}

PG_PASSWORD = "pgSentinelPassword0123"
REDIS_PASSWORDS = {u: f"{u}SentinelRedisPassword01" for u in ("api", "dispatcher", "executor", "probe")}
ADMIN_TOKEN = "adminSentinelToken0123456789"

# Every credential from values: nothing for the generator to do.
VALUES_PASSWORDS = {
    "s3": S3,
    "postgresql": {"internal": {"auth": {"password": PG_PASSWORD}}},
    "redis": {"internal": {"auth": {f"{u}Password": p for u, p in REDIS_PASSWORDS.items()}}},
    "api": {"adminToken": {"token": ADMIN_TOKEN}},
}

# The conventions operators expect: a registry mirror, digests, service accounts, extra env/volumes, executor pod
# annotations and labels (Istio), proxies for executors, topology spread, OpenShift security contexts.
PROXY_ENV = [{"name": "HTTPS_PROXY", "value": "http://proxy.corp:3128"}, {"name": "NO_PROXY", "value": ".svc,.cluster.local"}]
CONVENTIONS = {
    "global": {"imageRegistry": "mirror.corp.example", "compatibility": {"openshift": {"adaptSecurityContext": "force"}}},
    "s3": S3,
    "api": {
        "image": {"digest": "sha256:" + "a" * 64},
        "serviceAccount": {"create": False, "name": "shared-api"},
        "extraEnvFrom": [{"configMapRef": {"name": "api-extra"}}],
        "extraVolumes": [{"name": "corp-ca", "configMap": {"name": "corp-ca"}}],
        "extraVolumeMounts": [{"name": "corp-ca", "mountPath": "/etc/ssl/corp", "readOnly": True}],
        "podAnnotations": {"prometheus.io/scrape": "false"},
        "podLabels": {"team": "platform"},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                       "whenUnsatisfiable": "ScheduleAnyway",
                                       "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "api"}}}],
    },
    "dispatcher": {
        "image": {"tag": "0.1.0-rc1"},
        "serviceAccount": {"name": "fl-dispatcher", "annotations": {"team": "platform"}},
        "extraEnv": [{"name": "DISPATCHER_ADMIT_BATCH", "value": "64"}],
        "extraEnvFrom": [{"secretRef": {"name": "dispatcher-extra"}}],
        "retention": {"executionsDays": 90, "objectsDays": 7, "deadLettersDays": 0, "progressStreamSecs": 3600,
                      "pruneIntervalSecs": 60, "pruneBatchSize": 100},
    },
    "executor": {
        "image": {"registry": "ignored.example", "repository": "team/executor", "tag": "custom"},
        "podAnnotations": {"sidecar.istio.io/inject": "false"},
        "podLabels": {"cost-center": "wf"},
        "extraEnv": PROXY_ENV,
        "extraEnvFrom": [{"configMapRef": {"name": "executor-proxy"}}],
        "extraVolumes": [{"name": "corp-ca", "configMap": {"name": "corp-ca"}}],
        "extraVolumeMounts": [{"name": "corp-ca", "mountPath": "/etc/ssl/corp", "readOnly": True}],
    },
    "postgresql": {"internal": {"podAnnotations": {"backup": "nightly"}}},
    "networkPolicy": {"enabled": True, "api": {"ingressFrom": [{"namespaceSelector": {"matchLabels": {"name": "ingress"}}}]}},
}

# The Prometheus Operator's objects and the Grafana dashboard, beside an Ingress (which must not route metrics).
MONITORING = {
    "s3": S3,
    "ingress": INGRESS_TLS["ingress"],
    "monitoring": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"},
                           "alertLabels": {"team": "platform"}},
        "grafanaDashboard": {"enabled": True, "folder": "Flow-Like"},
    },
}

# Traces to an in-cluster collector, with NetworkPolicies that must let the pods reach it.
TRACING = {
    "s3": S3,
    "tracing": {"otlpEndpoint": "http://otel-collector.observability:4318"},
    "networkPolicy": {"enabled": True, "otlp": {"cidrs": ["10.96.0.0/12"], "ports": [4318]}},
}

EVERYTHING = {
    **KATA,
    "ingress": INGRESS_TLS["ingress"],
    "networkPolicy": {"enabled": True},
    "dispatcher": HPA["dispatcher"],
}

CASES = {
    "auto": AUTO,
    "external": EXTERNAL,
    "kata": KATA,
    "ingress-tls": INGRESS_TLS,
    "network-policies": NETWORK_POLICIES,
    "network-policies-external": NETWORK_POLICIES_EXTERNAL,
    "hpa": HPA,
    "migrate-on-start": MIGRATE_ON_START,
    "everything": EVERYTHING,
    "tls-redis": TLS_REDIS,
    "tls-redis-configmap": TLS_REDIS_CONFIGMAP,
    "s3-service-account": S3_SERVICE_ACCOUNT,
    "internal-existing-secrets": INTERNAL_EXISTING_SECRETS,
    "values-passwords": VALUES_PASSWORDS,
    "conventions": CONVENTIONS,
    "monitoring": MONITORING,
    "tracing": TRACING,
}
