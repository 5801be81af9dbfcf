"""The chart's Prometheus Operator objects: ServiceMonitors that scrape exactly the two metrics Services (checked
against the fields the operator's CRDs define: prometheus_operator_subset.schema.json), and the PrometheusRule,
whose alerts promtool checks and unit-tests on synthetic series (tests/monitoring/*.test.yaml), whose thresholds
come from values, and whose runbooks are docs/alerts.md. Helpers shared with test_grafana_dashboard.py live here.

`python3 tests/chart/test_monitoring.py DIR` writes the rendered rule files beside copies of the promtool tests into
DIR; then `cd DIR && promtool test rules *.test.yaml`."""

import copy
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import jsonschema
import pytest
import yaml

from cases import CASES, S3
from conftest import CHART, NAMESPACE, ROOT, render
from test_render import CUSTOM_KINDS

PROMTOOL_TESTS = sorted((ROOT / "tests" / "monitoring").glob("*.test.yaml"))
SUBSET_SCHEMA = json.loads((pathlib.Path(__file__).parent / "prometheus_operator_subset.schema.json").read_text())
ALERTS_DOC = ROOT / "docs" / "alerts.md"
# tests/monitoring/thresholds.test.yaml runs against the rules rendered with these (rules-thresholds.yaml).
THRESHOLDS = {"oldestWaitingMinutes": 20, "deadLettersIn15m": 2, "statusLagP99Seconds": 90, "api5xxRatio": 0.2}



def with_monitoring(monitoring, **render_args):
    return render({"s3": S3, "monitoring": monitoring}, **render_args)


def one(objects, kind):
    (obj,) = [o for _, o in objects if o["kind"] == kind]
    return obj


def rules_spec(rule_values=None, **render_args):
    """The PrometheusRule's spec, rendered with monitoring.prometheusRule.enabled and these values."""
    rule = {"enabled": True, **(rule_values or {})}
    return one(with_monitoring({"prometheusRule": rule}, **render_args), "PrometheusRule")["spec"]


def alerts(spec):
    return {r["alert"]: r for g in spec["groups"] for r in g["rules"]}


# --- promtool -----------------------------------------------------------------------------------------------

def promtool():
    path = shutil.which("promtool")
    if path:
        return path
    reason = "promtool is missing (Debian: apt-get install prometheus; scripts/install-deps.sh installs it)"
    if os.environ.get("CI", "").lower() not in ("", "0", "false") or os.environ.get("FLOWLIKE_REQUIRE_PROMTOOL"):
        pytest.fail(reason)
    pytest.skip(reason)


def run_promtool(*args, cwd):
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def write_rule_tests(directory, default_spec=None, files=PROMTOOL_TESTS):
    """The promtool tests beside the rule files they load: rules.yaml (defaults), rules-thresholds.yaml."""
    directory = pathlib.Path(directory)
    (directory / "rules.yaml").write_text(yaml.safe_dump(default_spec or rules_spec(), sort_keys=False))
    thresholds = rules_spec({"thresholds": THRESHOLDS})
    (directory / "rules-thresholds.yaml").write_text(yaml.safe_dump(thresholds, sort_keys=False))
    for path in files:
        shutil.copy(path, directory / path.name)
    return [path.name for path in files]


def check_expressions(exprs, tmp_path):
    """`promtool check rules` on the expressions as recording rules: fails on any PromQL syntax error."""
    rules = [{"record": f"check_{i}", "expr": e} for i, e in enumerate(exprs)]
    (tmp_path / "exprs.yaml").write_text(yaml.safe_dump({"groups": [{"name": "exprs", "rules": rules}]}))
    return run_promtool("check", "rules", "exprs.yaml", cwd=tmp_path)


# --- metric names -------------------------------------------------------------------------------------------

METRIC_RE = re.compile(r"\bflowlike_[a-z0-9_]+")


def documented_types():
    """name -> type from the tables of docs/metrics.md (rows "| `name` | type | ...")."""
    text = (ROOT / "docs" / "metrics.md").read_text()
    return dict(re.findall(r"^\| `(flowlike_[a-z0-9_]+)` \| (counter|gauge|histogram) \|", text, re.M))


def metric_types():
    return documented_types()


def family(name, types):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and types.get(name[: -len(suffix)]) == "histogram":
            return name[: -len(suffix)]
    return name


def queue_gauges(types):
    return {n for n, t in types.items() if t == "gauge" and n.startswith("flowlike_dispatcher_queue_")}


def usage_problems(expr, types):
    """What is wrong with how an expression uses the flowlike metrics."""
    problems = []
    gauges = queue_gauges(types)
    for match in METRIC_RE.finditer(expr):
        name, before = match.group(0), expr[: match.start()].rstrip()
        base = family(name, types)
        kind = types.get(base)
        if kind is None:
            problems.append(f"{name}: not in docs/metrics.md (nor pending)")
        elif kind == "histogram" and name == base:
            problems.append(f"{name}: a histogram, use _bucket, _sum or _count")
        elif kind == "counter" or name != base:
            if not re.search(r"\b(rate|increase)\($", before):
                problems.append(f"{name}: a counter, take rate() or increase()")
        elif base in gauges and not re.search(r"\b(max(\s*by\s*\([^)]*\))?\s*|absent)\($", before):
            problems.append(f"{name}: the same on every replica, aggregate it with max (never sum)")
        if name.endswith("_bucket") and "histogram_quantile(" not in expr:
            problems.append(f"{name}: buckets belong in histogram_quantile()")
    return problems


# --- ServiceMonitors ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(CASES))
def test_custom_resources_match_the_operator_crd_fields(rendered, case):
    custom = [(path, obj) for path, obj in rendered[case] if obj["apiVersion"].startswith("monitoring.coreos.com/")]
    for path, obj in custom:
        assert (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS, f"{path}: {obj['kind']} has no schema here"
        jsonschema.validate(obj, SUBSET_SCHEMA)
    assert len(custom) == (3 if case == "monitoring" else 0)


def test_the_subset_schema_refuses_what_the_crds_do_not_define():
    objects = render(CASES["monitoring"])
    monitor = copy.deepcopy(one([o for o in objects if o[1]["metadata"]["name"].endswith("-api")], "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    rule = copy.deepcopy(one(objects, "PrometheusRule"))
    rule["spec"]["groups"][0]["rules"][0]["for"] = "5 minutes"
    for broken in (monitor, rule):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, SUBSET_SCHEMA)


def test_monitoring_is_off_by_default(rendered):
    assert not [o for _, o in rendered["auto"] if o["apiVersion"].startswith("monitoring.coreos.com/")]
    assert not [o for _, o in rendered["auto"] if o["metadata"]["name"].endswith("-grafana-dashboard")]


def seconds(duration):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", duration))


@pytest.mark.parametrize("sm_namespace", ["", "monitoring"])
def test_each_service_monitor_scrapes_exactly_its_metrics_service(sm_namespace):
    values = copy.deepcopy(CASES["monitoring"])
    values["monitoring"]["serviceMonitor"]["namespace"] = sm_namespace
    objects = render(values)
    services = [o for _, o in objects if o["kind"] == "Service"]
    deployments = [o for _, o in objects if o["kind"] == "Deployment"]
    monitors = {o["metadata"]["name"]: o for _, o in objects if o["kind"] == "ServiceMonitor"}
    assert set(monitors) == {"rel-flow-like-api", "rel-flow-like-dispatcher"}
    for name, monitor in monitors.items():
        spec = monitor["spec"]
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert monitor["metadata"].get("namespace", NAMESPACE) == (sm_namespace or NAMESPACE)
        # The operator looks in the ServiceMonitor's own namespace unless namespaceSelector says otherwise.
        ns = spec.get("namespaceSelector", {})
        assert ns.get("any") or NAMESPACE in ns.get("matchNames", [monitor["metadata"].get("namespace", NAMESPACE)])
        selected = [s for s in services if spec["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
        assert [s["metadata"]["name"] for s in selected] == [f"{name}-metrics"], name
        (service,) = selected
        for endpoint in spec["endpoints"]:
            (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
            assert endpoint["path"] == "/metrics"
            assert seconds(endpoint["scrapeTimeout"]) <= seconds(endpoint["interval"])
            # ... and that port reaches the container's metrics listener.
            (deployment,) = [d for d in deployments if service["spec"]["selector"].items()
                             <= d["spec"]["template"]["metadata"]["labels"].items()]
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            (target,) = [p for p in container["ports"] if p["name"] == port["targetPort"]]
            listen = {e["name"]: e.get("value") for e in container["env"]}[
                "API_METRICS_LISTEN" if name.endswith("-api") else "DISPATCHER_METRICS_LISTEN"]
            assert listen.endswith(f":{target['containerPort']}")


def test_no_ingress_routes_a_metrics_port(rendered):
    for case, objects in rendered.items():
        services = {o["metadata"]["name"]: o for _, o in objects if o["kind"] == "Service"}
        for ing in [o for _, o in objects if o["kind"] == "Ingress"]:
            for rule in ing["spec"]["rules"]:
                for path in rule["http"]["paths"]:
                    backend = path["backend"]["service"]
                    assert not backend["name"].endswith("-metrics"), case
                    ports = [p for p in services[backend["name"]]["spec"]["ports"]
                             if backend["port"].get("name") == p["name"] or backend["port"].get("number") == p["port"]]
                    assert ports and all(p["targetPort"] != "metrics" for p in ports), case


# --- the PrometheusRule -------------------------------------------------------------------------------------

def test_rule_objects_carry_values_labels_and_runbooks(rendered):
    rule = one(rendered["monitoring"], "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    names = [g["name"] for g in rule["spec"]["groups"]]
    assert len(names) == len(set(names)), "group names are the CRD's list-map keys"
    home = yaml.safe_load((CHART / "Chart.yaml").read_text())["home"]
    for name, r in alerts(rule["spec"]).items():
        assert r["labels"]["severity"] in ("warning", "critical"), name
        assert r["labels"]["team"] == "platform", "alertLabels reach every alert"
        assert set(r["annotations"]) == {"summary", "description", "runbook_url"}, name
        assert r["annotations"]["runbook_url"] == f"{home}/blob/main/docs/alerts.md#{name.lower()}"
    forced = with_monitoring({"prometheusRule": {"enabled": True, "alertLabels": {"severity": "info"},
                                                 "runbookBaseUrl": "https://wiki.example/flow-like"}})
    for name, r in alerts(one(forced, "PrometheusRule")["spec"]).items():
        assert r["labels"]["severity"] != "info", "a rule's severity wins"
        assert r["annotations"]["runbook_url"] == f"https://wiki.example/flow-like#{name.lower()}"


def github_anchor(heading):
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def doc_sections():
    text = ALERTS_DOC.read_text()
    found = re.findall(r"^## ([^\n]+)\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    return {github_anchor(heading): (heading.strip(), body) for heading, body in found}


def test_every_alert_has_its_runbook_section_with_its_expression():
    sections = doc_sections()
    rendered_alerts = alerts(rules_spec(name="flow-like", namespace="flow-like"))
    assert {h for h, _ in sections.values()} == set(rendered_alerts), "one section per alert in docs/alerts.md"
    for name, rule in rendered_alerts.items():
        _, body = sections[rule["annotations"]["runbook_url"].rsplit("#", 1)[1]]
        shown = re.search(r"```promql\n(.*?)```", body, re.S).group(1)
        assert shown.split() == rule["expr"].split(), f"docs/alerts.md shows another expression for {name}"
        for part in ("**What it means.**", "**Likely causes", "**What to check first.**", "**How to resolve.**"):
            assert part in body, f"{name}: {part}"
    text = ALERTS_DOC.read_text()
    for anchor in re.findall(r"\]\(#([^)]+)\)", text):
        assert anchor in sections, anchor


def test_runbook_queries_parse_and_use_documented_metrics(tmp_path):
    exprs = []
    for _, body in doc_sections().values():
        blocks = re.findall(r"```promql\n(.*?)```", body, re.S)
        exprs.append(blocks[0])  # the alert's expression, over several lines
        exprs += [line for block in blocks[1:] for line in block.splitlines() if line.strip()]
    types = metric_types()
    for expr in exprs:
        unknown = {family(n, types) for n in METRIC_RE.findall(expr)} - set(types)
        assert not unknown, f"docs/alerts.md: {unknown}"
    proc = check_expressions(exprs, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rules_use_documented_metrics_the_right_way():
    types = metric_types()
    for name, rule in alerts(rules_spec()).items():
        assert usage_problems(rule["expr"], types) == [], name


def test_thresholds_come_from_values():
    exprs = {n: r["expr"] for n, r in alerts(rules_spec({"thresholds": THRESHOLDS})).items()}
    assert re.search(r"\) > 1200\n", exprs["FlowLikeWorkWaitingBelowLimit"])
    assert exprs["FlowLikeDeadLettersRising"].endswith(") > 2")
    assert exprs["FlowLikeStatusLagHigh"].endswith(") > 90")
    assert exprs["FlowLikeApiErrorRateHigh"].endswith("> 0.2")


def test_promtool_checks_the_rendered_rules(tmp_path):
    for name, spec in (("default.yaml", rules_spec()), ("thresholds.yaml", rules_spec({"thresholds": THRESHOLDS})),
                       ("monitoring-case.yaml", one(render(CASES["monitoring"]), "PrometheusRule")["spec"])):
        (tmp_path / name).write_text(yaml.safe_dump(spec))
        proc = run_promtool("check", "rules", name, cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_unit_tests_pass(tmp_path):
    names = write_rule_tests(tmp_path)
    proc = run_promtool("test", "rules", *names, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_unit_tests_cover_every_alert_firing_and_not_firing():
    spec_alerts = set(alerts(rules_spec()))
    fires, quiet = set(), set()
    for path in PROMTOOL_TESTS:
        for group in yaml.safe_load(path.read_text())["tests"]:
            for case in group.get("alert_rule_test", []):
                (fires if case["exp_alerts"] else quiet).add(case["alertname"])
            for case in group.get("promql_expr_test", []):
                for alert in re.findall(r'ALERTS\{alertname="(\w+)"', case["expr"]):
                    (fires if any(s["value"] for s in case["exp_samples"]) else quiet).add(alert)
    assert fires == spec_alerts and quiet == spec_alerts, (spec_alerts - fires, spec_alerts - quiet)


@pytest.mark.parametrize("mutation", [
    ("max by (tenant) (flowlike_dispatcher_queue_oldest", "sum by (tenant) (flowlike_dispatcher_queue_oldest"),
    ("  and on (tenant)\n", "  or on (tenant)\n"),
    ('code!~"2..|409"', 'code!~"2.."'),
])
def test_the_unit_tests_catch_a_wrong_rule(tmp_path, mutation):
    spec = rules_spec()
    old, new = mutation
    assert any(old in rule["expr"] for rule in alerts(spec).values()), mutation
    for rule in alerts(spec).values():
        rule["expr"] = rule["expr"].replace(old, new)
    names = write_rule_tests(tmp_path, default_spec=spec)
    proc = run_promtool("test", "rules", *names, cwd=tmp_path)
    assert proc.returncode != 0, f"no test failed with {mutation}"


if __name__ == "__main__":
    target = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "promtool-tests")
    target.mkdir(parents=True, exist_ok=True)
    names = write_rule_tests(target)
    print(f"wrote rules.yaml, rules-thresholds.yaml and {len(names)} tests to {target}; "
          f"run: cd {target} && promtool test rules *.test.yaml")
