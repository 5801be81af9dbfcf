"""The internal Redis ACL file, written by the Redis pod's init container (its real script, run here with sh) and
loaded into a real redis-server: each component can do what it needs and no more."""

import shutil
import socket
import subprocess
import time

import pytest

from cases import REDIS_PASSWORDS
from conftest import by_kind

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server not installed")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_version():
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    return tuple(int(p) for p in out.split("v=")[1].split()[0].split(".")[:2])


def write_acl(objects, path, passwords):
    """Runs the init container's script with its env, the passwords standing in for the Secret's keys."""
    (sts,) = [s for s in by_kind(objects, "StatefulSet") if s["metadata"]["name"].endswith("-redis")]
    (init,) = sts["spec"]["template"]["spec"]["initContainers"]
    env = {"PATH": "/usr/bin:/bin"}
    for e in init["env"]:
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            user = e["valueFrom"]["secretKeyRef"]["key"].removesuffix("-password")
            env[e["name"]] = passwords[user]
    assert env["ACL_FILE"] == "/etc/redis/users.acl"
    env["ACL_FILE"] = str(path)
    assert init["command"] == ["sh", "-c"]
    subprocess.run(["sh", "-c", init["args"][0]], env=env, check=True, timeout=10)
    return path.read_text()


@pytest.fixture(scope="module")
def acl_text(rendered, tmp_path_factory):
    return write_acl(rendered["auto"], tmp_path_factory.mktemp("acl") / "users.acl", REDIS_PASSWORDS)


def test_acl_file_shape(acl_text):
    lines = acl_text.splitlines()
    assert lines[0] == "user default off resetchannels -@all"
    p = REDIS_PASSWORDS
    assert f"user executor on >{p['executor']} ~flowlike:status* resetchannels -@all +xadd +ping +hello +client|setinfo" in lines
    assert f"user probe on >{p['probe']} resetchannels -@all +ping" in lines
    for user in ("api", "dispatcher"):
        (line,) = [l for l in lines if l.startswith(f"user {user} ")]
        assert line.startswith(f"user {user} on >{p[user]} ~flowlike:* resetchannels -@all ") and "-@dangerous" in line


@pytest.fixture(scope="module")
def redis(acl_text, tmp_path_factory):
    acl = acl_text
    if server_version() < (7, 2):
        # CLIENT SETINFO arrived in Redis 7.2 (the chart's image); older servers reject the rule.
        acl = acl.replace(" +client|setinfo", "")
    d = tmp_path_factory.mktemp("redis")
    (d / "users.acl").write_text(acl)
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d), "--save", "",
                             "--appendonly", "no", "--aclfile", str(d / "users.acl")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    passwords = REDIS_PASSWORDS

    def cli(user, *args):
        auth = ["--user", user, "--pass", passwords[user]] if user else []
        out = subprocess.run(["redis-cli", "-p", str(port), "--no-auth-warning", *auth, *args],
                             capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).strip()

    for _ in range(100):
        if "NOAUTH" in cli(None, "PING"):
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("redis-server did not start with the chart's ACL file")
    yield cli
    proc.terminate()
    proc.wait(timeout=10)


def test_default_user_is_disabled(redis):
    assert "NOAUTH" in redis(None, "PING")


def test_executor_may_only_append_status(redis):
    assert "-" in redis("executor", "XADD", "flowlike:status", "*", "event", "started")
    assert "-" in redis("executor", "XADD", "flowlike:status:exec-1", "*", "event", "log")
    assert "NOPERM" in redis("executor", "XADD", "flowlike:queue:acme:p5", "*", "a", "b")
    assert "NOPERM" in redis("executor", "XRANGE", "flowlike:status", "-", "+")
    assert "NOPERM" in redis("executor", "DEL", "flowlike:status")
    assert "NOPERM" in redis("executor", "GET", "flowlike:limits")
    assert redis("executor", "PING") == "PONG"


@pytest.mark.parametrize("user", ["api", "dispatcher"])
def test_components_stay_in_their_prefix_and_off_admin_commands(redis, user):
    assert redis(user, "SET", "flowlike:turn", "1") == "OK"
    assert redis(user, "XGROUP", "CREATE", f"flowlike:queue:{user}:p5", "dispatchers", "$", "MKSTREAM") == "OK"
    assert redis(user, "EVAL", "return redis.call('INCR', KEYS[1])", "1", "flowlike:turn").isdigit()
    assert "NOPERM" in redis(user, "GET", "other:key")
    for command in (["FLUSHALL"], ["CONFIG", "GET", "maxmemory"], ["KEYS", "flowlike:*"], ["SCRIPT", "FLUSH"],
                    ["ACL", "LIST"], ["SHUTDOWN"]):
        assert "NOPERM" in redis(user, *command), command


def test_probe_may_only_ping(redis):
    assert redis("probe", "PING") == "PONG"
    assert "NOPERM" in redis("probe", "GET", "flowlike:turn")
