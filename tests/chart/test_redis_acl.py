"""The internal Redis ACL file, loaded into a real redis-server: each component can do what it needs and no more."""

import shutil
import socket
import subprocess
import time

import pytest

from conftest import by_kind

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server not installed")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_version():
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    return tuple(int(p) for p in out.split("v=")[1].split()[0].split(".")[:2])


@pytest.fixture(scope="module")
def redis(rendered, tmp_path_factory):
    (secret,) = [s for s in by_kind(rendered["auto"], "Secret") if s["metadata"]["name"].endswith("-redis")]
    acl = secret["stringData"]["users.acl"]
    if server_version() < (7, 2):
        # CLIENT SETINFO arrived in Redis 7.2 (the chart's image); older servers reject the rule.
        acl = acl.replace(" +client|setinfo", "")
    d = tmp_path_factory.mktemp("redis")
    (d / "users.acl").write_text(acl)
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d), "--save", "",
                             "--appendonly", "no", "--aclfile", str(d / "users.acl")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    passwords = {u: secret["stringData"][f"{u}-password"] for u in ("api", "dispatcher", "executor", "probe")}

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
