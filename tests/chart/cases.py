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
}
