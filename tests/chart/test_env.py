"""The chart sets exactly the env names the binaries read (from their --help), and secrets only by reference."""

import json

import pytest

from cases import CASES, KATA
from conftest import component, help_text, pod_spec

SECRET_ENV = {"DATABASE_URL", "REDIS_URL", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "FLOWLIKE_ADMIN_TOKEN"}
S3_ENV = {"S3_ENDPOINT", "S3_REGION", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "S3_META_BUCKET",
          "S3_CONTENT_BUCKET", "S3_FORCE_PATH_STYLE"}
REQUIRED = {
    "api": {"API_LISTEN", "API_MIGRATE_ON_START", "DATABASE_URL", "REDIS_URL", "REDIS_PREFIX", "RUST_LOG",
            "LOG_FORMAT", "FLOWLIKE_ADMIN_TOKEN"} | S3_ENV,
    "dispatcher": {"DISPATCHER_RUNNER", "DISPATCHER_DRAIN_TIMEOUT_SECS", "DISPATCHER_GLOBAL_LIMIT",
                   "DISPATCHER_TENANT_LIMIT", "DISPATCHER_METRICS_LISTEN", "KUBE_NAMESPACE", "EXECUTOR_IMAGE",
                   "EXECUTOR_SECRET", "EXECUTOR_SERVICE_ACCOUNT", "EXECUTOR_DEADLINE_SECS", "EXECUTOR_BACKOFF_LIMIT",
                   "EXECUTOR_TTL_SECS", "DATABASE_URL", "REDIS_URL", "REDIS_PREFIX", "RUST_LOG", "LOG_FORMAT"} | S3_ENV,
    "migrate": {"DATABASE_URL"},
}
# The dispatcher copies these from its own env into executor Jobs; the rest come from the executor Secret.
EXECUTOR_FROM_DISPATCHER = {"REDIS_PREFIX", "S3_ENDPOINT", "S3_REGION", "S3_META_BUCKET", "S3_CONTENT_BUCKET",
                            "S3_FORCE_PATH_STYLE"}
EXECUTOR_FROM_SECRET = {"REDIS_URL", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"}
OUR_CONTAINERS = {"api": "api", "dispatcher": "dispatcher", "migrate": "migrate"}


def our_containers(objects):
    """(kind of binary, container, object) for every container running one of the flow-like binaries."""
    for _, obj in objects:
        spec = pod_spec(obj)
        if not spec:
            continue
        for c in spec.get("initContainers", []) + spec["containers"]:
            if c["image"].startswith("ghcr.io/flow-like/"):
                yield OUR_CONTAINERS[c["name"]], c, obj


@pytest.mark.parametrize("case", sorted(CASES))
def test_env_names_are_read_by_the_binary(rendered, binary_env, case):
    seen = set()
    for kind, container, obj in our_containers(rendered[case]):
        seen.add(kind)
        names = [e["name"] for e in container.get("env", [])]
        assert len(names) == len(set(names)), f"duplicate env in {obj['metadata']['name']}: {names}"
        unknown = set(names) - binary_env[kind]
        assert not unknown, f"{obj['metadata']['name']}/{container['name']} sets names its binary never reads: {unknown}"
        missing = REQUIRED[kind] - set(names)
        assert not missing, f"{obj['metadata']['name']}/{container['name']} lacks {missing}"
        assert not container.get("envFrom"), "envFrom would import names nobody checked"
    expected = {"api", "dispatcher"} | ({"migrate"} if CASES[case].get("migrations", {}).get("mode", "job") == "job" else set())
    assert seen == expected


def test_subcommands_exist():
    assert "serve" in help_text("flow-like-api") and "migrate" in help_text("flow-like-api")
    assert "run" in help_text("flow-like-dispatcher")


@pytest.mark.parametrize("case", sorted(CASES))
def test_container_args_are_the_documented_subcommands(rendered, case):
    for kind, container, _ in our_containers(rendered[case]):
        assert container["args"] == {"api": ["serve"], "dispatcher": ["run"], "migrate": ["migrate"]}[kind]


@pytest.mark.parametrize("case", sorted(CASES))
def test_secrets_only_by_reference(rendered, case):
    secrets = {o["metadata"]["name"]: o for _, o in rendered[case] if o["kind"] == "Secret"}
    values = CASES[case]
    existing = {
        values.get("s3", {}).get("existingSecret"),
        values.get("postgresql", {}).get("external", {}).get("existingSecret"),
        values.get("redis", {}).get("external", {}).get("existingSecret"),
        values.get("api", {}).get("adminToken", {}).get("existingSecret"),
    } - {None, ""}
    for _, container, obj in our_containers(rendered[case]):
        for e in container.get("env", []):
            if e["name"] not in SECRET_ENV:
                continue
            assert "value" not in e, f"{e['name']} as plain value in {obj['metadata']['name']}"
            ref = e["valueFrom"]["secretKeyRef"]
            if ref["name"] in secrets:
                assert ref["key"] in secrets[ref["name"]]["stringData"], ref
            else:
                assert ref["name"] in existing, f"{e['name']} refers to unknown Secret {ref['name']}"


def test_dispatcher_settings_reach_the_dispatcher(rendered):
    (dep,) = [o for _, o in rendered["kata"] if o["kind"] == "Deployment" and component(o) == "dispatcher"]
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    value = {k: e.get("value") for k, e in env.items()}
    assert value["DISPATCHER_RUNNER"] == "kubernetes"
    assert env["KUBE_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert value["EXECUTOR_RUNTIME_CLASS"] == "kata-qemu"
    assert value["EXECUTOR_IMAGE"] == "ghcr.io/flow-like/flow-like-executor:0.1.0"
    assert json.loads(value["EXECUTOR_NODE_SELECTOR"]) == KATA["executor"]["nodeSelector"]
    assert json.loads(value["EXECUTOR_TOLERATIONS"]) == KATA["executor"]["tolerations"]
    assert json.loads(value["EXECUTOR_AFFINITY"]) == KATA["executor"]["affinity"]
    assert value["EXECUTOR_PRIORITY_CLASS"] == "batch-low"
    assert value["EXECUTOR_SERVICE_ACCOUNT"] == "rel-flow-like-executor"
    assert value["EXECUTOR_SECRET"] == "rel-flow-like-executor"


def test_image_pull_secrets_reach_the_executor(rendered):
    (dep,) = [o for _, o in rendered["migrate-on-start"] if o["kind"] == "Deployment" and component(o) == "dispatcher"]
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["EXECUTOR_IMAGE_PULL_SECRETS"] == "ghcr,mirror"


def test_executor_gets_every_name_it_needs(rendered, binary_env):
    objects = rendered["auto"]
    (secret,) = [o for _, o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == "rel-flow-like-executor"]
    keys = set(secret["stringData"])
    assert keys == EXECUTOR_FROM_SECRET
    assert keys <= binary_env["executor"], "envFrom keys become env names: each must be one the executor reads"
    assert EXECUTOR_FROM_DISPATCHER <= binary_env["executor"]
    (dep,) = [o for _, o in objects if o["kind"] == "Deployment" and component(o) == "dispatcher"]
    names = {e["name"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert EXECUTOR_FROM_DISPATCHER <= names
    assert secret["stringData"]["REDIS_URL"].startswith("redis://executor:")


def test_external_redis_urls_use_the_configured_keys(rendered):
    refs = {}
    for kind, container, _ in our_containers(rendered["external"]):
        for e in container["env"]:
            if e["name"] in ("REDIS_URL", "DATABASE_URL"):
                refs[(kind, e["name"])] = (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
    assert refs[("api", "REDIS_URL")] == ("my-redis", "API_REDIS_URL")
    assert refs[("dispatcher", "REDIS_URL")] == ("my-redis", "DISPATCHER_REDIS_URL")
    assert refs[("migrate", "DATABASE_URL")] == ("my-postgres", "DATABASE_URL")
