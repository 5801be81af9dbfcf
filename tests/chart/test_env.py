"""The chart sets exactly the env names the binaries read (from their --help), and secrets only by reference."""

import json
import re

import pytest

from cases import CASES, CONVENTIONS, KATA, TLS_REDIS
from conftest import component, help_text, pod_spec

SECRET_ENV = {"DATABASE_URL", "REDIS_URL", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "FLOWLIKE_ADMIN_TOKEN"}
S3_ENV = {"S3_ENDPOINT", "S3_REGION", "S3_META_BUCKET", "S3_CONTENT_BUCKET", "S3_FORCE_PATH_STYLE"}
S3_KEYS = {"S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"}
RETENTION_ENV = {"RETENTION_EXECUTIONS_DAYS", "RETENTION_OBJECTS_DAYS", "RETENTION_DEAD_LETTERS_DAYS",
                 "RETENTION_PROGRESS_STREAM_SECS", "PRUNE_INTERVAL_SECS", "PRUNE_BATCH_SIZE"}
REQUIRED = {
    "api": {"API_LISTEN", "API_MIGRATE_ON_START", "DATABASE_URL", "REDIS_URL", "REDIS_PREFIX", "RUST_LOG",
            "LOG_FORMAT"} | S3_ENV,
    "dispatcher": {"DISPATCHER_RUNNER", "DISPATCHER_DRAIN_TIMEOUT_SECS", "DISPATCHER_GLOBAL_LIMIT",
                   "DISPATCHER_TENANT_LIMIT", "DISPATCHER_METRICS_LISTEN", "KUBE_NAMESPACE", "EXECUTOR_IMAGE",
                   "EXECUTOR_IMAGE_PULL_POLICY", "EXECUTOR_SECRET", "EXECUTOR_SERVICE_ACCOUNT",
                   "EXECUTOR_RUN_AS_USER", "EXECUTOR_DEADLINE_SECS", "EXECUTOR_BACKOFF_LIMIT", "EXECUTOR_TTL_SECS",
                   "DATABASE_URL", "REDIS_URL", "REDIS_PREFIX", "RUST_LOG", "LOG_FORMAT"} | S3_ENV | RETENTION_ENV,
    "migrate": {"DATABASE_URL"},
}
# Names no binary reads: the parts Kubernetes composes DATABASE_URL and REDIS_URL from ("$(NAME)" in a later
# value), so an internal service's password lives in one Secret only. Each must be referenced that way.
COMPOSE_HELPERS = {"FLOWLIKE_CHART_POSTGRESQL_PASSWORD", "FLOWLIKE_CHART_REDIS_PASSWORD"}
# The dispatcher copies these from its own env into executor Jobs; REDIS_URL comes from the executor Secret.
EXECUTOR_FROM_DISPATCHER = {"REDIS_PREFIX", "S3_ENDPOINT", "S3_REGION", "S3_META_BUCKET", "S3_CONTENT_BUCKET",
                            "S3_FORCE_PATH_STYLE", "REDIS_CA_FILE"}
OUR_CONTAINERS = {"api": "api", "dispatcher": "dispatcher", "migrate": "migrate"}


def our_containers(objects):
    """(kind of binary, container, object) for every container running one of the flow-like binaries."""
    for _, obj in objects:
        spec = pod_spec(obj)
        if not spec:
            continue
        for c in spec.get("initContainers", []) + spec["containers"]:
            if c["name"] in OUR_CONTAINERS and "/flow-like-" in c["image"]:
                yield OUR_CONTAINERS[c["name"]], c, obj


def values_of(case, kind):
    return CASES[case].get({"migrate": "api"}.get(kind, kind), {})


def env_map(container):
    return {e["name"]: e for e in container.get("env", [])}


def s3_static(case):
    return CASES[case].get("s3", {}).get("auth", "static") == "static"


@pytest.mark.parametrize("case", sorted(CASES))
def test_env_names_are_read_by_the_binary(rendered, binary_env, case):
    seen = set()
    for kind, container, obj in our_containers(rendered[case]):
        seen.add(kind)
        env = container.get("env", [])
        names = [e["name"] for e in env]
        where = f"{obj['metadata']['name']}/{container['name']}"
        assert len(names) == len(set(names)), f"duplicate env in {where}: {names}"
        unknown = set(names) - binary_env[kind] - COMPOSE_HELPERS
        assert not unknown, f"{where} sets names its binary never reads: {unknown}"
        missing = REQUIRED[kind] - set(names)
        if kind != "migrate" and s3_static(case):
            missing |= S3_KEYS - set(names)
        assert not missing, f"{where} lacks {missing}"
        for i, e in enumerate(env):
            if e["name"] in COMPOSE_HELPERS:
                assert "secretKeyRef" in e["valueFrom"], e
                later = " ".join(x.get("value", "") for x in env[i + 1:])
                assert f"$({e['name']})" in later, f"{where}: {e['name']} is set but composes nothing"
        # envFrom imports names nobody checked: only the user's own extraEnvFrom may add any.
        user = values_of(case, kind).get("extraEnvFrom", []) if kind != "migrate" else []
        assert container.get("envFrom", []) == user, where
    expected = {"api", "dispatcher"} | ({"migrate"} if CASES[case].get("migrations", {}).get("mode", "job") == "job" else set())
    assert seen == expected


def test_subcommands_exist():
    assert "serve" in help_text("flow-like-api") and "migrate" in help_text("flow-like-api")
    assert "run" in help_text("flow-like-dispatcher")


@pytest.mark.parametrize("case", sorted(CASES))
def test_container_args_are_the_documented_subcommands(rendered, case):
    for kind, container, _ in our_containers(rendered[case]):
        assert container["args"] == {"api": ["serve"], "dispatcher": ["run"], "migrate": ["migrate"]}[kind]


def generated_secrets(objects):
    """{secret name: keys} the secret generator hook creates, read from its script."""
    out = {}
    for _, obj in objects:
        if obj["kind"] == "Job" and component(obj) == "secret-generator":
            script = obj["spec"]["template"]["spec"]["containers"][0]["args"][0]
            for name, rest in re.findall(r'^\s*create "([^"]+)" \S+ (.*?)$', script.replace("\\\n", " "), re.M):
                out[name] = set(re.findall(r'"([A-Za-z0-9_.-]+)=', rest))
    return out


def user_secrets(values):
    found = {
        values.get("s3", {}).get("existingSecret"),
        values.get("postgresql", {}).get("external", {}).get("existingSecret"),
        values.get("postgresql", {}).get("internal", {}).get("auth", {}).get("existingSecret"),
        values.get("redis", {}).get("external", {}).get("existingSecret"),
        values.get("redis", {}).get("internal", {}).get("auth", {}).get("existingSecret"),
        values.get("api", {}).get("adminToken", {}).get("existingSecret"),
    }
    return found - {None, ""}


def check_secret_ref(ref, objects, case):
    secrets = {o["metadata"]["name"]: set(o["stringData"]) for _, o in objects if o["kind"] == "Secret"}
    secrets.update(generated_secrets(objects))
    if ref["name"] in secrets:
        assert ref["key"] in secrets[ref["name"]], ref
    else:
        assert ref["name"] in user_secrets(CASES[case]), f"refers to unknown Secret {ref['name']}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_secrets_only_by_reference(rendered, case):
    for _, container, obj in our_containers(rendered[case]):
        env = env_map(container)
        for e in env.values():
            if e["name"] in SECRET_ENV | COMPOSE_HELPERS and "valueFrom" in e:
                check_secret_ref(e["valueFrom"]["secretKeyRef"], rendered[case], case)
            elif e["name"] in SECRET_ENV:
                # Composed by Kubernetes: the value names the password, it does not hold it.
                refs = re.findall(r"\$\(([A-Z_]+)\)", e["value"])
                assert refs and set(refs) <= COMPOSE_HELPERS, f"{e['name']} as plain value in {obj['metadata']['name']}"
                assert re.fullmatch(r"(postgres|redis)://[a-z]+:\$\([A-Z_]+\)@[a-z0-9.-]+:\d+(/\w+)?", e["value"]), e


def dispatcher_env(objects):
    (dep,) = [o for _, o in objects if o["kind"] == "Deployment" and component(o) == "dispatcher"]
    return env_map(dep["spec"]["template"]["spec"]["containers"][0])


def test_dispatcher_settings_reach_the_dispatcher(rendered):
    env = dispatcher_env(rendered["kata"])
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
    assert value["EXECUTOR_RUN_AS_USER"] == "65532"


def test_retention_settings(rendered):
    defaults = {k: e["value"] for k, e in dispatcher_env(rendered["auto"]).items() if k in RETENTION_ENV}
    assert defaults == {"RETENTION_EXECUTIONS_DAYS": "30", "RETENTION_OBJECTS_DAYS": "30",
                        "RETENTION_DEAD_LETTERS_DAYS": "30", "RETENTION_PROGRESS_STREAM_SECS": "86400",
                        "PRUNE_INTERVAL_SECS": "300", "PRUNE_BATCH_SIZE": "500"}
    given = {k: e["value"] for k, e in dispatcher_env(rendered["conventions"]).items() if k in RETENTION_ENV}
    assert given == {"RETENTION_EXECUTIONS_DAYS": "90", "RETENTION_OBJECTS_DAYS": "7",
                     "RETENTION_DEAD_LETTERS_DAYS": "0", "RETENTION_PROGRESS_STREAM_SECS": "3600",
                     "PRUNE_INTERVAL_SECS": "60", "PRUNE_BATCH_SIZE": "100"}


def test_image_pull_secrets_reach_the_executor(rendered):
    env = dispatcher_env(rendered["migrate-on-start"])
    assert env["EXECUTOR_IMAGE_PULL_SECRETS"]["value"] == "ghcr,mirror"


def executor_json(objects, name):
    env = dispatcher_env(objects)
    return json.loads(env[name]["value"]) if name in env else None


@pytest.mark.parametrize("case", sorted(CASES))
def test_executor_gets_every_name_it_needs(rendered, binary_env, case):
    objects = rendered[case]
    env = dispatcher_env(objects)
    assert EXECUTOR_FROM_DISPATCHER - {"REDIS_CA_FILE"} <= set(env)
    assert EXECUTOR_FROM_DISPATCHER <= binary_env["executor"]
    secret_name = env["EXECUTOR_SECRET"]["value"]
    # The executor Secret the chart makes (from values or by the generator) holds REDIS_URL only: envFrom turns
    # every key into an env name, and the S3 keys reach executors by reference instead.
    rendered_secret = [o for _, o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == secret_name]
    keys = set(rendered_secret[0]["stringData"]) if rendered_secret else generated_secrets(objects).get(secret_name)
    if keys is None:
        assert secret_name == CASES[case]["executor"]["existingSecret"], "the executor Secret must come from somewhere"
    else:
        assert keys == {"REDIS_URL"}
    extra = executor_json(objects, "EXECUTOR_EXTRA_ENV") or []
    user = [e["name"] for e in values_of(case, "executor").get("extraEnv", [])]
    chart = [e["name"] for e in extra if e["name"] not in user]
    assert set(chart) <= binary_env["executor"]
    from_s3 = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in extra if e["name"] in S3_KEYS}
    if s3_static(case) and keys is not None:
        assert set(from_s3) == S3_KEYS, "the executor needs the S3 keys, by reference"
        for ref in from_s3.values():
            check_secret_ref(ref, objects, case)
    else:
        assert not from_s3


def test_executor_pod_settings(rendered):
    objects = rendered["conventions"]
    e = CONVENTIONS["executor"]
    assert executor_json(objects, "EXECUTOR_POD_ANNOTATIONS") == {"sidecar.istio.io/inject": "false"}
    assert executor_json(objects, "EXECUTOR_POD_LABELS") == e["podLabels"]
    assert executor_json(objects, "EXECUTOR_EXTRA_ENV")[-2:] == e["extraEnv"]
    assert executor_json(objects, "EXECUTOR_EXTRA_ENV_FROM") == e["extraEnvFrom"]
    assert executor_json(objects, "EXECUTOR_EXTRA_VOLUMES") == e["extraVolumes"]
    assert executor_json(objects, "EXECUTOR_EXTRA_VOLUME_MOUNTS") == e["extraVolumeMounts"]
    env = dispatcher_env(objects)
    assert env["EXECUTOR_IMAGE"]["value"] == "mirror.corp.example/team/executor:custom", "global.imageRegistry wins"
    assert env["EXECUTOR_RUN_AS_USER"]["value"] == "", "OpenShift assigns executor uids"
    for name in ("EXECUTOR_POD_ANNOTATIONS", "EXECUTOR_POD_LABELS", "EXECUTOR_EXTRA_ENV_FROM",
                 "EXECUTOR_EXTRA_VOLUMES", "EXECUTOR_EXTRA_VOLUME_MOUNTS"):
        assert name not in dispatcher_env(rendered["auto"]), "empty settings are left out"


@pytest.mark.parametrize("case", ["tls-redis", "tls-redis-configmap"])
def test_redis_ca_reaches_every_component(rendered, case):
    objects = rendered[case]
    key = CASES[case]["redis"]["tls"].get("caKey", "ca.crt")
    path = f"/etc/flow-like/redis-ca/{key}"
    source = ({"secret": {"secretName": "redis-ca"}} if case == "tls-redis" else {"configMap": {"name": "trust-bundle"}})
    kind = next(iter(source))
    seen = set()
    for binary, container, obj in our_containers(objects):
        if binary == "migrate":
            assert "REDIS_CA_FILE" not in env_map(container), "migrations do not use Redis"
            continue
        seen.add(binary)
        assert env_map(container)["REDIS_CA_FILE"]["value"] == path
        spec = obj["spec"]["template"]["spec"]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "redis-ca"]
        assert mount == {"name": "redis-ca", "mountPath": "/etc/flow-like/redis-ca", "readOnly": True}
        (volume,) = [v for v in spec["volumes"] if v["name"] == "redis-ca"]
        assert {k: v for k, v in volume[kind].items() if k != "items"} == source[kind]
        assert volume[kind]["items"] == [{"key": key, "path": key}]
    assert seen == {"api", "dispatcher"}
    # Executors: the dispatcher copies REDIS_CA_FILE into each Job; the chart mounts the CA at the same path.
    volumes = executor_json(objects, "EXECUTOR_EXTRA_VOLUMES")
    mounts = executor_json(objects, "EXECUTOR_EXTRA_VOLUME_MOUNTS")
    (volume,) = [v for v in volumes if v["name"] == "redis-ca"]
    assert volume[kind]["items"] == [{"key": key, "path": key}]
    assert {"name": "redis-ca", "mountPath": "/etc/flow-like/redis-ca", "readOnly": True} in mounts
    assert TLS_REDIS["redis"]["external"]["existingSecret"] == "my-redis", "rediss:// URLs come from the user's Secret"


def test_service_account_s3_auth_uses_no_keys(rendered):
    objects = rendered["s3-service-account"]
    for _, container, obj in our_containers(objects):
        assert not S3_KEYS & set(env_map(container)), obj["metadata"]["name"]
    assert executor_json(objects, "EXECUTOR_EXTRA_ENV") is None
    assert not [o for _, o in objects if o["kind"] == "Secret" and o["metadata"]["name"].endswith("-s3")]
    keys = generated_secrets(objects)["rel-flow-like-executor"]
    assert keys == {"REDIS_URL"}
    accounts = {o["metadata"]["name"]: o for _, o in objects if o["kind"] == "ServiceAccount"}
    for name in ("api", "dispatcher", "executor"):
        annotations = accounts[f"rel-flow-like-{name}"]["metadata"]["annotations"]
        assert annotations["eks.amazonaws.com/role-arn"] == "arn:aws:iam::123456789012:role/flow-like"


def test_external_redis_urls_use_the_configured_keys(rendered):
    refs = {}
    for kind, container, _ in our_containers(rendered["external"]):
        for e in container["env"]:
            if e["name"] in ("REDIS_URL", "DATABASE_URL"):
                refs[(kind, e["name"])] = (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
    assert refs[("api", "REDIS_URL")] == ("my-redis", "API_REDIS_URL")
    assert refs[("dispatcher", "REDIS_URL")] == ("my-redis", "DISPATCHER_REDIS_URL")
    assert refs[("migrate", "DATABASE_URL")] == ("my-postgres", "DATABASE_URL")


def test_internal_existing_secrets_are_referenced(rendered):
    objects = rendered["internal-existing-secrets"]
    assert not [o for _, o in objects if o["kind"] == "Secret" and o["metadata"]["name"] != "rel-flow-like-s3"]
    assert not generated_secrets(objects), "nothing left to generate"
    for kind, container, _ in our_containers(objects):
        env = env_map(container)
        assert env["FLOWLIKE_CHART_POSTGRESQL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "my-pg-auth", "key": "postgres-password"}
        if kind != "migrate":
            assert env["FLOWLIKE_CHART_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
                "name": "my-redis-auth", "key": f"{kind}-password"}
        if kind == "api":
            assert env["FLOWLIKE_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "my-admin-token"
    sets = {o["metadata"]["name"]: o for _, o in objects if o["kind"] == "StatefulSet"}
    pg_env = env_map(sets["rel-flow-like-postgresql"]["spec"]["template"]["spec"]["containers"][0])
    assert pg_env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "my-pg-auth", "key": "postgres-password"}
    acl_env = env_map(sets["rel-flow-like-redis"]["spec"]["template"]["spec"]["initContainers"][0])
    for user in ("api", "dispatcher", "executor", "probe"):
        assert acl_env[f"{user.upper()}_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "my-redis-auth", "key": f"{user}-password"}
    assert dispatcher_env(objects)["EXECUTOR_SECRET"]["value"] == "my-executor"


@pytest.mark.parametrize("case", sorted(CASES))
def test_executor_extras_pass_the_dispatchers_checks(rendered, case):
    # The dispatcher refuses (at start-up) extra volumes named `tmp`, mounts of volumes it was not given, mounts on
    # /tmp, and extra env that replaces an attempt's identity.
    objects = rendered[case]
    volumes = executor_json(objects, "EXECUTOR_EXTRA_VOLUMES") or []
    mounts = executor_json(objects, "EXECUTOR_EXTRA_VOLUME_MOUNTS") or []
    names = [v["name"] for v in volumes]
    assert len(names) == len(set(names)) and "tmp" not in names
    for m in mounts:
        assert m["name"] in names and m["mountPath"] != "/tmp", m
    env = [e["name"] for e in executor_json(objects, "EXECUTOR_EXTRA_ENV") or []]
    assert len(env) == len(set(env))
    assert not {"EXECUTION_ID", "EXECUTION_ATTEMPT", "EXECUTION_TENANT"} & set(env)
    run_as = dispatcher_env(objects)["EXECUTOR_RUN_AS_USER"]["value"]
    assert run_as == "" or int(run_as) > 0


def test_executor_run_as_user_can_be_left_unset():
    from cases import S3
    from conftest import render

    env = dispatcher_env(render({"s3": S3, "executor": {"runAsUser": None}}))
    assert env["EXECUTOR_RUN_AS_USER"]["value"] == ""
    env = dispatcher_env(render({"s3": S3, "executor": {"runAsUser": 1000750000}}))
    assert env["EXECUTOR_RUN_AS_USER"]["value"] == "1000750000"
