"""docker-compose.yml and the Dockerfiles, checked by reading them (no Docker engine here)."""

import re

import pytest
import yaml

from conftest import ROOT


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def test_env_names_are_read_by_the_binaries(compose, binary_env):
    assert set(compose["api"]["environment"]) <= binary_env["api"]
    assert set(compose["dispatcher"]["environment"]) <= binary_env["dispatcher"]


def test_stack_shape(compose):
    assert {"redis", "postgres", "minio", "minio-init", "api", "dispatcher"} <= set(compose)
    assert compose["dispatcher"]["environment"]["DISPATCHER_RUNNER"] == "process"
    assert compose["dispatcher"]["environment"]["DISPATCHER_EXECUTOR_PATH"] == "/usr/local/bin/flow-like-executor"
    redis = compose["redis"]["command"]
    assert redis[redis.index("--appendonly") + 1] == "yes"
    assert redis[redis.index("--appendfsync") + 1] == "everysec"
    for name, service in compose.items():
        if name != "minio-init":
            assert "healthcheck" in service, name
    api_deps = compose["api"]["depends_on"]
    assert api_deps["minio-init"]["condition"] == "service_completed_successfully"
    assert api_deps["postgres"]["condition"] == api_deps["redis"]["condition"] == "service_healthy"
    assert compose["dispatcher"]["depends_on"]["api"]["condition"] == "service_healthy"
    mb = " ".join(compose["minio-init"]["entrypoint"])
    env = compose["api"]["environment"]
    assert env["S3_META_BUCKET"] in mb and env["S3_CONTENT_BUCKET"] in mb


@pytest.mark.parametrize("binary", ["api", "dispatcher", "executor"])
def test_dockerfiles_are_multi_stage_and_non_root(binary):
    text = (ROOT / "docker" / f"{binary}.Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert stages[0] == "rust:1.95-bookworm" and len(stages) == 2
    assert stages[1] in ("gcr.io/distroless/cc-debian12:nonroot", "debian:bookworm-slim")
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert f"--bin flow-like-{binary}" in text
    assert (ROOT / "docker" / f"{binary}.Dockerfile.dockerignore").read_text().count("target/") >= 1
