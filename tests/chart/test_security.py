"""Least privilege: RBAC, service accounts, the "restricted" Pod Security Standard, NetworkPolicies, and no secret
value outside a Secret."""

import json
import pathlib
import re

import pytest
import yaml

from cases import ADMIN_TOKEN, CASES, PG_PASSWORD, REDIS_PASSWORDS, S3_KEY_ID, S3_SECRET
from conftest import ROOT, component, pod_spec

RESTRICTED_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                           "projected", "secret"}


def documented_dispatcher_rules():
    """The rules listed in docs/install-kubernetes.md under "What the dispatcher may do"."""
    text = (ROOT / "docs" / "install-kubernetes.md").read_text()
    section = text.split("## What the dispatcher may do", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    return yaml.safe_load(block)["rules"]


def rbac_reference_role():
    """The Role in docs/kubernetes-rbac.md (whose rules the runner's tests enforce in the Kubernetes simulator,
    checking the runner uses every one of them and nothing else)."""
    text = (ROOT / "docs" / "kubernetes-rbac.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    (role,) = [doc for doc in yaml.safe_load_all(block) if doc["kind"] == "Role"]
    return role


def account(case, name):
    """The service account name a component runs as in a case."""
    sa = CASES[case].get(name, {}).get("serviceAccount", {})
    if sa.get("create", True):
        return sa.get("name") or f"rel-flow-like-{name}"
    return sa.get("name") or "default"


@pytest.mark.parametrize("case", sorted(CASES))
def test_rbac_is_exactly_the_documented_dispatcher_role(rendered, case):
    objects = rendered[case]
    assert not [o for _, o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    (role,) = [o for _, o in objects if o["kind"] == "Role" and component(o) == "dispatcher"]
    assert role["rules"] == documented_dispatcher_rules()
    assert role["rules"] == rbac_reference_role()["rules"]
    assert role["rules"] == [
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch", "delete"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
    ]
    (binding,) = [o for _, o in objects if o["kind"] == "RoleBinding" and component(o) == "dispatcher"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account(case, "dispatcher"),
                                    "namespace": "flow-like"}]


@pytest.mark.parametrize("case", sorted(CASES))
def test_secret_generator_may_only_create_secrets(rendered, case):
    objects = rendered[case]
    roles = [o for _, o in objects if o["kind"] == "Role" and component(o) == "secret-generator"]
    for role in roles:
        assert role["metadata"]["annotations"]["helm.sh/hook"].startswith("pre-install")
        rules = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]
        if any("resourceNames" in r for r in role["rules"]):
            rules.append({"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["rel-flow-like-redis"],
                          "verbs": ["get"]})
        assert role["rules"] == rules
        (binding,) = [o for _, o in objects if o["kind"] == "RoleBinding" and component(o) == "secret-generator"]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rel-flow-like-secret-generator",
                                        "namespace": "flow-like"}]
    assert bool(roles) == (case not in ("external", "network-policies-external", "tls-redis", "tls-redis-configmap",
                                        "internal-existing-secrets", "values-passwords")), case


@pytest.mark.parametrize("case", sorted(CASES))
def test_only_the_dispatcher_and_the_secret_generator_get_a_token(rendered, case):
    accounts = {o["metadata"]["name"]: o for _, o in rendered[case] if o["kind"] == "ServiceAccount"}
    for name in ("api", "executor"):
        if account(case, name) in accounts:
            assert accounts[account(case, name)]["automountServiceAccountToken"] is False
    for _, obj in rendered[case]:
        spec = pod_spec(obj)
        if spec is None:
            continue
        if component(obj) == "dispatcher":
            assert spec["serviceAccountName"] == account(case, "dispatcher")
        elif component(obj) == "secret-generator":
            assert spec["serviceAccountName"] == "rel-flow-like-secret-generator"
            assert spec["automountServiceAccountToken"] is True
        else:
            assert spec.get("automountServiceAccountToken") is False, obj["metadata"]["name"]
            assert spec.get("serviceAccountName") != account(case, "dispatcher")


def restricted_violations(spec):
    """Checks of the Kubernetes Pod Security Standard "restricted" profile (plus read-only root filesystems)."""
    problems = []
    for field in ("hostNetwork", "hostPID", "hostIPC", "hostUsers"):
        if spec.get(field) and field != "hostUsers":
            problems.append(field)
    pod_sc = spec.get("securityContext", {})
    if pod_sc.get("sysctls"):
        problems.append("sysctls")
    for v in spec.get("volumes", []):
        kinds = set(v) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {v['name']}: {kinds}")
    for c in spec.get("initContainers", []) + spec["containers"]:
        sc = c.get("securityContext", {})
        name = c["name"]
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation not false")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            problems.append(f"{name}: capabilities not dropped")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities")
        if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True):
            problems.append(f"{name}: runAsNonRoot")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser 0")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile {seccomp}")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: writable root filesystem")
        for p in c.get("ports", []):
            if p.get("hostPort"):
                problems.append(f"{name}: hostPort")
        if sc.get("procMount") not in (None, "Default"):
            problems.append(f"{name}: procMount")
    return problems


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_pod_is_restricted(rendered, case):
    pods = [(o, pod_spec(o)) for _, o in rendered[case] if pod_spec(o) is not None]
    assert pods
    for obj, spec in pods:
        assert restricted_violations(spec) == [], obj["metadata"]["name"]


def test_the_restricted_check_catches_violations():
    spec = {"securityContext": {}, "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
            "containers": [{"name": "c", "securityContext": {"privileged": True}}]}
    assert len(restricted_violations(spec)) >= 5


def secret_values(objects):
    """Every secret string the chart rendered, including passwords inside URLs."""
    found = {S3_KEY_ID, S3_SECRET, PG_PASSWORD, ADMIN_TOKEN, *REDIS_PASSWORDS.values()}
    for _, obj in objects:
        if obj["kind"] != "Secret":
            continue
        for value in obj.get("stringData", {}).values():
            found.add(value)
            found.update(re.findall(r">(\S+)", value))
            found.update(re.findall(r"://[^:/]*:([^@]+)@", value))
    return {v for v in found if len(v) >= 8}


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_secret_outside_a_secret(rendered, case):
    secrets = secret_values(rendered[case])
    for path, obj in rendered[case]:
        if obj["kind"] == "Secret":
            continue
        text = json.dumps(obj)
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"{path} {obj['kind']}/{obj['metadata']['name']} contains a secret value"


def network_policy(objects, name):
    (np,) = [o for _, o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == name]
    return np


def test_executor_egress_only_dns_redis_s3(rendered):
    np = network_policy(rendered["network-policies"], "rel-flow-like-executor")
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in np["spec"], "no ingress at all"
    assert np["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/part-of": "flow-like",
                                                        "app.kubernetes.io/component": "executor"}
    ports = [sorted((p["port"], p["protocol"]) for p in rule["ports"]) for rule in np["spec"]["egress"]]
    assert ports == [[(53, "TCP"), (53, "UDP")], [(6379, "TCP")], [(443, "TCP")]]
    redis_to = np["spec"]["egress"][1]["to"][0]["podSelector"]["matchLabels"]
    assert redis_to["app.kubernetes.io/component"] == "redis"


def test_network_policies_external_mode(rendered):
    objects = rendered["network-policies-external"]
    executor = network_policy(objects, "rel-flow-like-executor")["spec"]["egress"]
    assert executor[1] == {"to": [{"ipBlock": {"cidr": "10.20.0.6/32"}}], "ports": [{"port": 6380, "protocol": "TCP"}]}
    assert executor[2]["to"] == [{"ipBlock": {"cidr": "203.0.113.0/24"}}]
    assert executor[3]["to"] == [{"ipBlock": {"cidr": "198.51.100.0/24"}}], "extraEgress appended"
    api = network_policy(objects, "rel-flow-like-api")["spec"]["egress"]
    assert {"to": [{"ipBlock": {"cidr": "10.20.0.5/32"}}], "ports": [{"port": 5432, "protocol": "TCP"}]} in api
    names = {o["metadata"]["name"] for _, o in objects if o["kind"] == "NetworkPolicy"}
    assert names == {"rel-flow-like-api", "rel-flow-like-dispatcher", "rel-flow-like-migrate", "rel-flow-like-executor",
                     "rel-flow-like-test"}


def test_only_the_dispatcher_reaches_the_kubernetes_api(rendered):
    objects = rendered["network-policies"]
    for name in ("api", "executor", "migrate"):
        egress = network_policy(objects, f"rel-flow-like-{name}")["spec"]["egress"]
        assert not any(p["port"] == 6443 for rule in egress for p in rule.get("ports", [])), name
    dispatcher = network_policy(objects, "rel-flow-like-dispatcher")["spec"]["egress"]
    assert any(p["port"] == 6443 for rule in dispatcher for p in rule["ports"])
    redis_in = network_policy(objects, "rel-flow-like-redis")["spec"]["ingress"][0]["from"]
    components = sorted(f["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for f in redis_in)
    assert components == ["api", "dispatcher", "executor"]
    pg_in = network_policy(objects, "rel-flow-like-postgresql")["spec"]["ingress"][0]["from"]
    components = sorted(f["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for f in pg_in)
    assert components == ["api", "dispatcher", "migrate"]


def test_no_network_policies_unless_enabled(rendered):
    assert not [o for _, o in rendered["auto"] if o["kind"] == "NetworkPolicy"]
