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


S3_NO_KEYS = {k: v for k, v in S3.items() if k not in ("accessKeyId", "secretAccessKey")}


def test_existing_s3_secret_renders_offline():
    # No lookup: the executors take the S3 keys by reference to the same Secret, so `helm template` works.
    objects = render({"s3": {**S3_NO_KEYS, "existingSecret": "my-s3"}})
    assert not [o for _, o in objects if o["kind"] == "Secret"]


@pytest.mark.parametrize("given", ["accessKeyId", "secretAccessKey"])
def test_half_set_static_keys_name_the_other_half(given):
    with pytest.raises(HelmRenderError) as err:
        render({"s3": {**S3_NO_KEYS, given: S3[given]}})
    message = str(err.value)
    missing = {"accessKeyId": "s3.secretAccessKey", "secretAccessKey": "s3.accessKeyId"}[given]
    assert missing in message and f"s3.{given}," not in message, message
    assert "s3.auth=serviceAccount" in message


@pytest.mark.parametrize("extra", [{"accessKeyId": "AKIA1"}, {"existingSecret": "my-s3"}])
def test_service_account_auth_refuses_keys(extra):
    with pytest.raises(HelmRenderError) as err:
        render({"s3": {**S3_NO_KEYS, "auth": "serviceAccount", **extra}})
    assert f"s3.{next(iter(extra))}" in str(err.value)
    assert "serviceAccount" in str(err.value)


def test_service_account_auth_needs_no_keys():
    render({"s3": {**S3_NO_KEYS, "auth": "serviceAccount"}})


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


def test_internal_redis_existing_secret_requires_an_executor_secret():
    with pytest.raises(HelmRenderError) as err:
        render({"s3": S3, "redis": {"internal": {"auth": {"existingSecret": "my-redis-auth"}}}})
    assert "executor.existingSecret" in str(err.value)
    assert "redis://executor:<executor-password>@rel-flow-like-redis:6379" in str(err.value)


def test_redis_passwords_are_all_or_none():
    with pytest.raises(HelmRenderError) as err:
        render({"s3": S3, "redis": {"internal": {"auth": {"apiPassword": "a" * 20, "executorPassword": "b" * 20}}}})
    message = str(err.value)
    assert "redis.internal.auth.dispatcherPassword" in message and "redis.internal.auth.probePassword" in message
    assert "apiPassword" not in message.split("missing:")[1]


def test_without_the_generator_every_credential_must_be_given():
    with pytest.raises(HelmRenderError) as err:
        render({"s3": S3, "secretGenerator": {"enabled": False}})
    message = str(err.value)
    for setting in ("postgresql.internal.auth.password", "redis.internal.auth", "api.adminToken.token"):
        assert setting in message, message
    render({"s3": S3, "secretGenerator": {"enabled": False}, "postgresql": {"internal": {"auth": {"password": "p" * 20}}},
            "redis": {"internal": {"auth": {f"{u}Password": u * 8 for u in ("api", "dispatcher", "executor", "probe")}}},
            "api": {"adminToken": {"enabled": False}}})


@pytest.mark.parametrize("name", ["tmp", "redis-ca"])
def test_extra_volumes_keep_off_the_charts_names(name):
    from cases import TLS_REDIS

    with pytest.raises(HelmRenderError) as err:
        render({**TLS_REDIS, "executor": {**TLS_REDIS["executor"], "extraVolumes": [{"name": name, "emptyDir": {}}]}})
    assert "executor.extraVolumes" in str(err.value) and name in str(err.value)


def test_openshift_mode_is_checked():
    # Helm does not check `global` against the schema, so the template does.
    with pytest.raises(HelmRenderError) as err:
        render({"s3": S3, "global": {"compatibility": {"openshift": {"adaptSecurityContext": "yes"}}}})
    assert "adaptSecurityContext" in str(err.value)


def test_redis_ca_needs_an_external_redis():
    with pytest.raises(HelmRenderError) as err:
        render({"s3": S3, "redis": {"tls": {"caSecret": "redis-ca"}}})
    assert "redis.external.existingSecret" in str(err.value)


def test_redis_ca_from_one_source():
    with pytest.raises(HelmRenderError) as err:
        render({"s3": S3, "redis": {"external": {"existingSecret": "r"}, "tls": {"caSecret": "a", "caConfigMap": "b"}},
                "executor": {"existingSecret": "e"}})
    assert "caSecret or caConfigMap" in str(err.value)


@pytest.mark.parametrize("values", [
    {"migrations": {"mode": "sometimes"}},
    {"dispatcher": {"replicas": "two"}},
    {"dispatcher": {"globalLimt": 5}},
    {"logging": {"format": "xml"}},
    {"s3": {**S3, "auth": "irsa"}},
    {"postgresql": {"internal": {"auth": {"password": "has space"}}}},
    {"redis": {"internal": {"auth": {"apiPassword": "p@ss"}}}},
    {"api": {"image": {"digest": "latest"}}},
    {"serviceAccounts": {"api": {"annotations": {}}}},
    {"image": {"tag": "1.0"}},
    {"dispatcher": {"retention": {"executionsDays": -1}}},
])
def test_schema_rejects_bad_values(values):
    with pytest.raises(helm_python.HelmError):
        render({"s3": S3, **values})
