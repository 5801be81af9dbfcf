"""Shared fixtures: the chart rendered with the real Helm SDK, and the env names the real binaries read."""

import os
import pathlib
import re
import subprocess

import pytest
import yaml
from helm_python import Chart

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "flow-like"
RELEASE = "rel"
NAMESPACE = "flow-like"


def render(values, name=RELEASE, namespace=NAMESPACE):
    """Renders the chart like `helm install` would, minus the cluster: a list of (template, object)."""
    rendered = Chart.load(str(CHART)).render(values, name=name, namespace=namespace, is_install=True)
    objects = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for obj in yaml.safe_load_all(text):
            if obj:
                objects.append((path, obj))
    return objects


def by_kind(objects, kind):
    return [obj for _, obj in objects if obj["kind"] == kind]


def component(obj):
    return obj["metadata"].get("labels", {}).get("app.kubernetes.io/component")


def pod_spec(obj):
    """The pod template of a workload, or None for other kinds."""
    if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
        return obj["spec"]["template"]["spec"]
    if obj["kind"] == "Pod":
        return obj["spec"]
    return None


# --- the binaries -------------------------------------------------------------------------------------------

ENV_RE = re.compile(r"\[env: ([A-Z0-9_]+)[=\]]")  # hide_env_values prints "[env: NAME]"


def bin_dir():
    return pathlib.Path(os.environ.get("FLOWLIKE_BIN_DIR", ROOT / "target" / "debug"))


def help_text(binary, *args):
    path = bin_dir() / binary
    if not path.exists():
        pytest.fail(f"{path} is missing: run `cargo build -p flow-like-api -p flow-like-dispatcher "
                    f"-p flow-like-executor` or point FLOWLIKE_BIN_DIR at the binaries")
    proc = subprocess.run([str(path), *args, "--help"], capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ.get("PATH", ""), "RUST_BACKTRACE": "0"})
    if proc.returncode != 0:
        pytest.fail(f"`{binary} {' '.join(args)} --help` failed ({proc.returncode}): {proc.stderr.strip()[:600]}")
    return proc.stdout


def env_names(binary, *args):
    names = set(ENV_RE.findall(help_text(binary, *args)))
    assert names, f"`{binary} {' '.join(args)} --help` lists no [env: ...] entries"
    return names


@pytest.fixture(scope="session")
def binary_env():
    """Env names per container kind, exactly as the binaries' --help lists them (top level + subcommand)."""
    api_top = env_names("flow-like-api")
    dispatcher_top = env_names("flow-like-dispatcher")
    return {
        "api": api_top | env_names("flow-like-api", "serve"),
        "migrate": api_top | env_names("flow-like-api", "migrate"),
        "dispatcher": dispatcher_top | env_names("flow-like-dispatcher", "run"),
        "executor": env_names("flow-like-executor"),
    }


@pytest.fixture(scope="session")
def rendered():
    """Every case of the values matrix, rendered once per session."""
    from cases import CASES

    return {name: render(values) for name, values in CASES.items()}
