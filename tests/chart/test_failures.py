"""Settings the chart refuses to render without, and the messages that say what to fix."""

import helm_python
import pytest
from helm_python import HelmRenderError

from cases import S3
from conftest import CHART, NAMESPACE, render


def test_missing_s3_fails_and_names_every_missing_setting():
    with pytest.raises(HelmRenderError) as err:
        render({})
    message = str(err.value)
    for setting in ("s3.endpoint", "s3.region", "s3.metaBucket", "s3.contentBucket", "s3.accessKeyId",
                    "s3.secretAccessKey"):
        assert setting in message, message
    assert "S3" in message


@pytest.mark.parametrize("missing", sorted(S3))
def test_each_s3_setting_is_required(missing):
    values = {"s3": {k: v for k, v in S3.items() if k != missing}}
    with pytest.raises(HelmRenderError) as err:
        render(values)
    assert f"s3.{missing}" in str(err.value)


def test_existing_s3_secret_replaces_inline_credentials():
    s3 = {k: v for k, v in S3.items() if k not in ("accessKeyId", "secretAccessKey")}
    render({"s3": {**s3, "existingSecret": "my-s3"}, "executor": {"existingSecret": "my-executor"}})


def test_existing_s3_secret_needs_a_cluster_or_an_executor_secret():
    # The chart-made executor Secret copies the S3 keys, which only a live install can read.
    s3 = {k: v for k, v in S3.items() if k not in ("accessKeyId", "secretAccessKey")}
    with pytest.raises(HelmRenderError) as err:
        render({"s3": {**s3, "existingSecret": "my-s3"}})
    assert "executor.existingSecret" in str(err.value)


def test_bare_chart_lints_but_does_not_install():
    # Helm's lint mode turns `fail` into a log line, so chart repositories can lint the bare chart; an install
    # (a real render) still refuses to go ahead without S3.
    report = helm_python.lint(str(CHART), {}, strict=True, namespace=NAMESPACE, kube_version="v1.33.0")
    assert report["errors"] == [], report
    with pytest.raises(HelmRenderError):
        render({})


def test_external_redis_requires_an_executor_secret():
    with pytest.raises(HelmRenderError) as err:
        render({"s3": S3, "redis": {"external": {"existingSecret": "my-redis"}}})
    assert "executor.existingSecret" in str(err.value)


def test_grace_period_must_exceed_drain_timeout():
    with pytest.raises(HelmRenderError) as err:
        render({"s3": S3, "dispatcher": {"drainTimeoutSecs": 60, "terminationGracePeriodSeconds": 60}})
    assert "drainTimeoutSecs" in str(err.value)


@pytest.mark.parametrize("values", [
    {"migrations": {"mode": "sometimes"}},
    {"dispatcher": {"replicas": "two"}},
    {"dispatcher": {"globalLimt": 5}},
    {"logging": {"format": "xml"}},
])
def test_schema_rejects_bad_values(values):
    with pytest.raises(helm_python.HelmError):
        render({"s3": S3, **values})
