"""Strict lint, rendering and official-schema validation of every case in the values matrix."""

import helm_python
import kubernetes_validate
import pytest
from kubernetes_validate.utils import latest_version

from cases import CASES
from conftest import CHART, NAMESPACE

KUBE_VERSIONS = sorted({"1.33.0", latest_version()})

# Custom resources of the Prometheus Operator, which kubernetes_validate has no schema for. test_monitoring.py
# validates them instead, against the fields the operator's CRDs define.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_strict_lint_is_clean(case):
    report = helm_python.lint(str(CHART), CASES[case], strict=True, namespace=NAMESPACE, kube_version="v1.33.0")
    assert report["errors"] == [], report
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_document_validates_strictly(rendered, case, version):
    objects = rendered[case]
    assert objects, "nothing rendered"
    for path, obj in objects:
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{path} {obj['kind']}/{obj['metadata']['name']} invalid for {version}: "
                        f"{err.message} at {list(err.path)}")


def test_newest_schema_is_newer_than_the_minimum():
    # Guards the matrix: if the package shipped only 1.33, "newest" would silently test nothing new.
    assert tuple(int(p) for p in latest_version().split(".")[:2]) > (1, 33)


@pytest.mark.parametrize("case", sorted(CASES))
def test_resource_names_are_unique_per_kind(rendered, case):
    seen = set()
    for _, obj in rendered[case]:
        key = (obj["kind"], obj["metadata"]["name"])
        assert key not in seen, f"duplicate {key}"
        seen.add(key)


def test_auto_mode_runs_internal_stores_on_default_storage_class(rendered):
    sets = {s["metadata"]["name"]: s for _, s in rendered["auto"] if s["kind"] == "StatefulSet"}
    assert set(sets) == {"rel-flow-like-postgresql", "rel-flow-like-redis"}
    for s in sets.values():
        (claim,) = s["spec"]["volumeClaimTemplates"]
        assert "storageClassName" not in claim["spec"], "an explicit class would bypass the default StorageClass"
    redis_args = sets["rel-flow-like-redis"]["spec"]["template"]["spec"]["containers"][0]["args"]
    pairs = dict(zip(redis_args[::2], redis_args[1::2]))
    assert pairs["--appendonly"] == "yes"
    assert pairs["--appendfsync"] == "everysec"
    assert pairs["--maxmemory-policy"] == "noeviction"
    assert pairs["--aclfile"] == "/etc/redis/users.acl"


def test_external_mode_runs_no_internal_stores(rendered):
    objects = rendered["external"]
    assert not [o for _, o in objects if o["kind"] == "StatefulSet"]
    # The user's Secrets are referenced, never re-created.
    names = {o["metadata"]["name"] for _, o in objects if o["kind"] == "Secret"}
    assert names == set(), names


def test_dispatcher_grace_period_exceeds_drain_bound(rendered):
    for case, objects in rendered.items():
        (dep,) = [o for _, o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-dispatcher")]
        spec = dep["spec"]["template"]["spec"]
        env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
        assert spec["terminationGracePeriodSeconds"] > int(env["DISPATCHER_DRAIN_TIMEOUT_SECS"]), case


def test_hpa_owns_the_replica_count(rendered):
    (dep,) = [o for _, o in rendered["hpa"] if o["kind"] == "Deployment" and "dispatcher" in o["metadata"]["name"]]
    assert "replicas" not in dep["spec"]
    (hpa,) = [o for _, o in rendered["hpa"] if o["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 20)
    assert not [o for _, o in rendered["auto"] if o["kind"] == "HorizontalPodAutoscaler"]


def test_dispatcher_has_a_disruption_budget(rendered):
    pdbs = [o for _, o in rendered["auto"] if o["kind"] == "PodDisruptionBudget"]
    selectors = [p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] for p in pdbs]
    assert "dispatcher" in selectors


def test_ingress_tls_and_cert_manager(rendered):
    (ing,) = [o for _, o in rendered["ingress-tls"] if o["kind"] == "Ingress"]
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["tls"] == [{"secretName": "flow-like-tls", "hosts": ["flow.example.org"]}]
    assert ing["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    services = {o["metadata"]["name"]: o for _, o in rendered["ingress-tls"] if o["kind"] == "Service"}
    assert backend["name"] in services


def test_api_metrics_are_never_routed_by_the_ingress(rendered):
    objects = rendered["ingress-tls"]
    services = {o["metadata"]["name"]: o for _, o in objects if o["kind"] == "Service"}
    (metrics,) = [s for name, s in services.items() if name.endswith("-api-metrics")]
    assert [(p["name"], p["port"], p["targetPort"]) for p in metrics["spec"]["ports"]] == [("metrics", 9090, "metrics")]
    (api,) = [d for _, d in objects if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-api")]
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert {"name": "API_METRICS_LISTEN", "value": "0.0.0.0:9090"} in container["env"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8080, "metrics": 9090}
    (ing,) = [o for _, o in objects if o["kind"] == "Ingress"]
    for rule in ing["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] != metrics["metadata"]["name"]
            routed = [p for p in services[backend["name"]]["spec"]["ports"]
                      if backend["port"].get("name") == p["name"] or backend["port"].get("number") == p["port"]]
            assert [p["targetPort"] for p in routed] == ["http"], backend


def test_migrations_mode(rendered):
    jobs = [o for _, o in rendered["auto"] if o["kind"] == "Job" and o["metadata"]["name"].endswith("-migrate")]
    (job,) = jobs
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]

    def migrate_on_start(objects):
        (dep,) = [o for _, o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-api")]
        env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
        return env["API_MIGRATE_ON_START"]

    assert migrate_on_start(rendered["auto"]) == "false"
    assert migrate_on_start(rendered["migrate-on-start"]) == "true"
    assert not [o for _, o in rendered["migrate-on-start"] if o["kind"] == "Job" and o["metadata"]["name"].endswith("-migrate")]


def test_kata_runtime_class(rendered):
    (rc,) = [o for _, o in rendered["kata"] if o["kind"] == "RuntimeClass"]
    assert rc["handler"] == "kata-qemu"
    assert not [o for _, o in rendered["auto"] if o["kind"] == "RuntimeClass"]


def test_probes_use_the_health_endpoints(rendered):
    for _, obj in rendered["auto"]:
        spec = obj["kind"] in ("Deployment", "StatefulSet") and obj["spec"]["template"]["spec"]
        if not spec:
            continue
        for c in spec["containers"]:
            assert "readinessProbe" in c and "livenessProbe" in c, f"{obj['metadata']['name']}/{c['name']}"
            if c["name"] in ("api", "dispatcher"):
                assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
                assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"


@pytest.mark.parametrize("case", sorted(CASES))
def test_notes_name_the_secrets_and_the_test(case):
    from helm_python import Chart

    notes = Chart.load(str(CHART)).render(CASES[case], name="rel", namespace=NAMESPACE,
                                          is_install=True)["flow-like/templates/NOTES.txt"]
    assert "helm test rel -n flow-like" in notes
    token = CASES[case].get("api", {}).get("adminToken", {}).get("existingSecret") or "rel-flow-like-admin-token"
    assert f"get secret {token} " in notes


def test_helm_test_pod_asks_readyz(rendered):
    (pod,) = [o for _, o in rendered["auto"] if o["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (c,) = pod["spec"]["containers"]
    assert c["command"] == ["curl"] and c["args"][-1] == "http://rel-flow-like-api:80/readyz"
    assert "--fail" in c["args"]


def test_conventions(rendered):
    from cases import CONVENTIONS

    objects = rendered["conventions"]
    images = {}
    for _, o in objects:
        spec = pod_spec_of(o)
        for c in (spec or {}).get("initContainers", []) + (spec or {}).get("containers", []):
            images[f"{o['metadata']['name']}/{c['name']}"] = c["image"]
            assert c["image"].startswith("mirror.corp.example/"), "global.imageRegistry is honoured everywhere"
    assert images["rel-flow-like-api/api"] == "mirror.corp.example/flow-like/flow-like-api@sha256:" + "a" * 64
    assert images["rel-flow-like-dispatcher/dispatcher"].endswith("/flow-like/flow-like-dispatcher:0.1.0-rc1")
    assert images["rel-flow-like-postgresql/postgresql"] == "mirror.corp.example/library/postgres:16"
    deployments = {o["metadata"]["name"]: o for _, o in objects if o["kind"] == "Deployment"}
    api = deployments["rel-flow-like-api"]["spec"]["template"]
    assert api["metadata"]["labels"]["team"] == "platform"
    assert api["metadata"]["annotations"]["prometheus.io/scrape"] == "false"
    assert len(api["metadata"]["annotations"]["checksum/secrets"]) == 64
    assert api["spec"]["topologySpreadConstraints"] == CONVENTIONS["api"]["topologySpreadConstraints"]
    assert api["spec"]["serviceAccountName"] == "shared-api"
    (c,) = api["spec"]["containers"]
    assert {"name": "corp-ca", "mountPath": "/etc/ssl/corp", "readOnly": True} in c["volumeMounts"]
    assert {"name": "corp-ca", "configMap": {"name": "corp-ca"}} in api["spec"]["volumes"]
    names = {o["metadata"]["name"] for _, o in objects if o["kind"] == "ServiceAccount"}
    assert "rel-flow-like-api" not in names and "fl-dispatcher" in names
    # OpenShift: no fixed uid, gid or fsGroup in any pod.
    for _, o in objects:
        spec = pod_spec_of(o)
        if spec:
            assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(spec.get("securityContext", {})), o["metadata"]["name"]
            for c in spec.get("initContainers", []) + spec["containers"]:
                assert "runAsUser" not in c.get("securityContext", {})
    auto = {o["metadata"]["name"]: o for _, o in rendered["auto"] if o["kind"] == "Deployment"}
    assert auto["rel-flow-like-api"]["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 65532


def pod_spec_of(obj):
    from conftest import pod_spec

    return pod_spec(obj)
