"""GitOps-safe rendering: the same values render byte-identical manifests (helm template, Argo CD, Flux), no
template reads the cluster or draws random values, and the secret generator hook (its real script, run here with
sh and curl against a small stand-in for the Kubernetes Secrets API) creates each missing credential once and
never changes one that exists."""

import base64
import json
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import shutil

import pytest
from helm_python import Chart

from cases import AUTO, CASES, EXTERNAL
from conftest import CHART, NAMESPACE, RELEASE, component, render


def raw_render(values):
    return Chart.load(str(CHART)).render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


@pytest.mark.parametrize("case", ["auto", "external", "values-passwords", "s3-service-account", "conventions"])
def test_two_renders_are_byte_identical(case):
    first, second = raw_render(CASES[case]), raw_render(CASES[case])
    assert first == second
    assert raw_render(AUTO) != raw_render(EXTERNAL)


def test_no_template_reads_the_cluster_or_draws_random_values():
    for path in (CHART / "templates").rglob("*"):
        if path.is_file():
            text = path.read_text()
            for word in ("lookup", "randAlphaNum", "randAscii", "randNumeric", "randBytes", "uuidv4", "genCA",
                         "genPrivateKey", "genSelfSignedCert", "now"):
                assert not re.search(rf"\b{word}\b", text), f"{path.name} uses {word}"


def hook_annotations(objects, kind, comp):
    (obj,) = [o for _, o in objects if o["kind"] == kind and component(o) == comp]
    return obj["metadata"]["annotations"]


def test_hook_order_for_helm_and_argo_cd(rendered):
    objects = rendered["auto"]
    generator = hook_annotations(objects, "Job", "secret-generator")
    migrate = hook_annotations(objects, "Job", "migrate")
    # Helm: the generator runs before anything is installed (and around upgrades); migrations after install
    # (the internal PostgreSQL exists) and before upgrades.
    assert generator["helm.sh/hook"] == "pre-install,pre-upgrade,post-upgrade"
    assert migrate["helm.sh/hook"] == "post-install,pre-upgrade"
    for kind in ("ServiceAccount", "Role", "RoleBinding"):
        rbac = hook_annotations(objects, kind, "secret-generator")
        assert rbac["helm.sh/hook"] == generator["helm.sh/hook"]
        assert int(rbac["helm.sh/hook-weight"]) < int(generator["helm.sh/hook-weight"])
        assert int(rbac["argocd.argoproj.io/sync-wave"]) < int(generator["argocd.argoproj.io/sync-wave"])
    # Argo CD (its own annotations win over Helm's): the generator is PreSync; the migration is a Sync hook in a
    # wave after the internal PostgreSQL and Redis (which Argo CD waits to be healthy) and the API's service
    # account it runs as, and before the API and dispatchers (wave 0).
    assert generator["argocd.argoproj.io/hook"] == "PreSync"
    assert migrate["argocd.argoproj.io/hook"] == "Sync"
    wave = int(migrate["argocd.argoproj.io/sync-wave"])
    for _, o in objects:
        name = o["metadata"]["name"]
        own = int(o["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))
        if component(o) in ("postgresql", "redis") or (o["kind"] == "ServiceAccount" and name == "rel-flow-like-api"):
            assert own < wave, name
        elif component(o) in ("api", "dispatcher") and o["kind"] in ("Deployment", "Service"):
            assert own > wave, name


def test_generator_only_when_something_is_generated(rendered):
    for case, objects in rendered.items():
        jobs = [o for _, o in objects if o["kind"] == "Job" and component(o) == "secret-generator"]
        needed = case not in ("external", "network-policies-external", "tls-redis", "tls-redis-configmap",
                              "internal-existing-secrets", "values-passwords")
        assert len(jobs) == int(needed), case


def test_checksum_annotation_follows_chart_secrets():
    def checksum(values):
        objects = render(values)
        (dep,) = [o for _, o in objects if o["kind"] == "Deployment" and component(o) == "api"]
        return dep["spec"]["template"]["metadata"]["annotations"]["checksum/secrets"]

    base = checksum(CASES["values-passwords"])
    assert base == checksum(CASES["values-passwords"])
    changed = json.loads(json.dumps(CASES["values-passwords"]))
    changed["api"]["adminToken"]["token"] = "anotherSentinelToken0123456"
    assert checksum(changed) != base


# --- the generator script against a stand-in for the Kubernetes API ---------------------------------------------

class FakeSecrets(BaseHTTPRequestHandler):
    """POST .../secrets (201, or 409 when it exists) and GET .../secrets/NAME, with a bearer token."""

    store: dict = {}
    token = "fake-token"
    requests: list = []

    def log_message(self, *args):
        pass

    def reply(self, code, body):
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authorized(self):
        if self.headers.get("Authorization") != f"Bearer {self.token}":
            self.reply(401, {"kind": "Status", "code": 401})
            return False
        return True

    def do_POST(self):
        if not self.authorized():
            return
        assert self.path == f"/api/v1/namespaces/{NAMESPACE}/secrets", self.path
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        name = body["metadata"]["name"]
        self.requests.append(("POST", name))
        if name in self.store:
            return self.reply(409, {"kind": "Status", "reason": "AlreadyExists", "code": 409})
        body["metadata"]["managedFields"] = [{"fieldsV1": {"f:data": {f"f:{k}": {} for k in body["data"]}}}]
        self.store[name] = body
        self.reply(201, body)

    def do_GET(self):
        if not self.authorized():
            return
        name = self.path.rsplit("/", 1)[1]
        self.requests.append(("GET", name))
        if name not in self.store:
            return self.reply(404, {"kind": "Status", "code": 404})
        self.reply(200, self.store[name])


@pytest.fixture
def kube_api(tmp_path):
    FakeSecrets.store = {}
    FakeSecrets.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeSecrets)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "namespace").write_text(NAMESPACE)
    (sa / "token").write_text(FakeSecrets.token)
    (sa / "ca.crt").write_text("")
    yield f"http://127.0.0.1:{server.server_address[1]}", sa, tmp_path
    server.shutdown()


def generator_script(values):
    (job,) = [o for _, o in render(values) if o["kind"] == "Job" and component(o) == "secret-generator"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["/bin/sh", "-c"]
    return container["args"][0]


def run_generator(kube_api, values):
    url, sa, tmp = kube_api
    script = generator_script(values).replace("/tmp/", f"{tmp}/")
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "SA_DIR": str(sa), "KUBE_API": url})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def data(name):
    return {k: base64.b64decode(v).decode() for k, v in FakeSecrets.store[name]["data"].items()}


needs_curl = pytest.mark.skipif(not shutil.which("curl"), reason="curl not installed")


@needs_curl
def test_generator_creates_missing_credentials_once(kube_api):
    out = run_generator(kube_api, AUTO)
    assert "created Secret rel-flow-like-redis" in out
    assert set(FakeSecrets.store) == {"rel-flow-like-postgresql", "rel-flow-like-redis", "rel-flow-like-executor",
                                      "rel-flow-like-admin-token"}
    redis, pg, admin = data("rel-flow-like-redis"), data("rel-flow-like-postgresql"), data("rel-flow-like-admin-token")
    passwords = [redis[f"{u}-password"] for u in ("api", "dispatcher", "executor", "probe")]
    passwords += [pg["password"], admin["FLOWLIKE_ADMIN_TOKEN"]]
    assert len(set(passwords)) == len(passwords), "distinct"
    assert all(re.fullmatch(r"[A-Za-z0-9]{40}", p) for p in passwords), "URL-safe without encoding"
    assert data("rel-flow-like-executor") == {"REDIS_URL": f"redis://executor:{redis['executor-password']}@rel-flow-like-redis:6379"}
    meta = FakeSecrets.store["rel-flow-like-redis"]["metadata"]
    assert meta["labels"]["flow-like/release"] == "rel"
    # Not the instance label: Argo CD (label tracking) would prune a Secret that is not in Git.
    assert "app.kubernetes.io/instance" not in meta["labels"]

    before = {name: data(name) for name in FakeSecrets.store}
    out = run_generator(kube_api, AUTO)
    assert "created" not in out and out.count("kept as it is") == 4
    assert {name: data(name) for name in FakeSecrets.store} == before, "an existing Secret is never changed"


@needs_curl
def test_generator_rebuilds_the_executor_secret_from_the_redis_password(kube_api):
    run_generator(kube_api, AUTO)
    executor_url = data("rel-flow-like-executor")["REDIS_URL"]
    del FakeSecrets.store["rel-flow-like-executor"]  # e.g. removed by an upgrade from an older chart
    run_generator(kube_api, AUTO)
    assert data("rel-flow-like-executor")["REDIS_URL"] == executor_url


@needs_curl
def test_generator_makes_only_what_values_do_not_give(kube_api):
    values = {**CASES["values-passwords"], "api": {"adminToken": {"token": ""}}}
    run_generator(kube_api, values)
    assert set(FakeSecrets.store) == {"rel-flow-like-admin-token"}


@needs_curl
def test_generator_fails_loudly(kube_api):
    FakeSecrets.token = "other"
    try:
        url, sa, tmp = kube_api
        proc = subprocess.run(["sh", "-c", generator_script(AUTO).replace("/tmp/", f"{tmp}/")], capture_output=True,
                              text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "SA_DIR": str(sa), "KUBE_API": url})
        assert proc.returncode != 0 and "HTTP 401" in proc.stderr
    finally:
        FakeSecrets.token = "fake-token"
