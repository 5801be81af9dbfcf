"""The Grafana dashboard (charts/flow-like/files/grafana-dashboard.json) and the ConfigMap that carries it: a
Grafana dashboard model whose every query parses as PromQL, uses documented metrics the way their type asks, and
never adds up the queue gauges that every dispatcher replica reports alike (checked with promtool over series of
one and of two replicas, for the alerts' queue expressions too)."""

import json
import re

import yaml

from cases import CASES
from conftest import CHART, render
from test_monitoring import (METRIC_RE, alerts, check_expressions, family, metric_types,
                             queue_gauges, rules_spec, run_promtool, usage_problems, with_monitoring)

DASHBOARD_FILE = CHART / "files" / "grafana-dashboard.json"

GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def dashboard():
    return json.loads(DASHBOARD_FILE.read_text())


def all_panels(d):
    for panel in d["panels"]:
        yield panel
        yield from panel.get("panels", [])


def panel_exprs(d):
    return [(p, t["expr"]) for p in all_panels(d) for t in p.get("targets", [])]


def concrete(expr, namespace="flow-like"):
    """A panel query with Grafana's variables replaced as Grafana would (all tenants)."""
    for var, value in {**GRAFANA_VARIABLES, "$namespace": namespace, "$tenant": ".*"}.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unknown variable in {expr}"
    return expr


def test_dashboard_config_map_embeds_the_file():
    objects = render(CASES["monitoring"])
    (cm,) = [o for _, o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-grafana-dashboard")]
    assert cm["metadata"]["name"] == "rel-flow-like-grafana-dashboard"
    assert cm["data"] == {"flow-like.json": DASHBOARD_FILE.read_text().strip()}
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Flow-Like"}
    assert "namespace" not in cm["metadata"]
    custom = with_monitoring({"grafanaDashboard": {"enabled": True, "namespace": "grafana", "labelKey": "dashboards",
                                                    "labelValue": "flow-like"}})
    (cm,) = [o for _, o in custom if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-grafana-dashboard")]
    assert cm["metadata"]["namespace"] == "grafana"
    assert cm["metadata"]["labels"]["dashboards"] == "flow-like" and "grafana_dashboard" not in cm["metadata"]["labels"]
    assert "annotations" not in cm["metadata"]


def test_dashboard_is_a_grafana_dashboard_model():
    d = dashboard()
    assert d["title"] and re.fullmatch(r"[a-z0-9-]{1,40}", d["uid"]) and isinstance(d["schemaVersion"], int)
    assert d["schemaVersion"] >= 36 and d["id"] is None
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    tenant = variables["tenant"]
    assert tenant["type"] == "query" and tenant["multi"] and tenant["includeAll"] and tenant["allValue"] == ".*"
    assert re.fullmatch(r"label_values\(flowlike_dispatcher_queue_waiting(\{[^}]*\})?, tenant\)",
                        tenant["query"]["query"]), tenant["query"]
    ids, cells = set(), set()
    for panel in all_panels(d):
        assert panel["id"] not in ids, panel["title"]
        ids.add(panel["id"])
        g = panel["gridPos"]
        assert all(isinstance(g[k], int) for k in "hwxy") and g["x"] + g["w"] <= 24 and g["h"] > 0, panel["title"]
        covered = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not covered & cells, f"{panel['title']} overlaps another panel"
        cells |= covered
        if panel["type"] != "row":
            assert panel["title"] and panel["targets"], panel["title"]
            for target in [panel] + panel["targets"]:
                assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
    used = {v for _, e in panel_exprs(d) for v in re.findall(r"\$\{?(\w+)", e)}
    assert used <= set(variables) | {k[1:] for k in GRAFANA_VARIABLES}, used


# What the dashboard must show: a query matching each pattern.
REQUIRED_PANELS = {
    "queue depth per tenant": r"max by \(tenant, priority\) \(flowlike_dispatcher_queue_waiting\{[^}]*tenant=~",
    "oldest waiting age per tenant": r"max by \(tenant\) \(flowlike_dispatcher_queue_oldest_waiting_age_seconds",
    "running per tenant": r"max by \(tenant\) \(flowlike_dispatcher_queue_running\{",
    "tenant limit": r"max by \(tenant\) \(flowlike_dispatcher_queue_tenant_limit",
    "running globally": r"max\(flowlike_dispatcher_queue_running_global",
    "global limit": r"max\(flowlike_dispatcher_queue_global_limit",
    "queue wait percentiles": r"histogram_quantile\(0\.99, .*flowlike_dispatcher_queue_wait_seconds_bucket",
    "dispatch to start percentiles": r"histogram_quantile\(0\.99, .*dispatch_to_start_seconds_bucket",
    "end to end percentiles": r"histogram_quantile\(0\.99, .*flowlike_dispatcher_end_to_end_seconds_bucket",
    "admitted": r"sum\(rate\(flowlike_dispatcher_admitted_total",
    "finished": r"sum\(rate\(flowlike_dispatcher_attempts_finished_total",
    "dead letters by reason": r"sum by \(reason\) \(rate\(flowlike_dispatcher_dead_lettered_total",
    "job outcomes by cause": r"sum by \(cause\) \(rate\(flowlike_dispatcher_kube_job_outcomes_total",
    "API 5xx": r"flowlike_api_http_requests_total\{[^}]*status=~\"5\.\.\"",
    "dispatchers alive": r"max\(flowlike_dispatcher_queue_dispatchers_alive",
    "status lag": r"histogram_quantile\(0\.99, .*flowlike_dispatcher_status_lag_seconds_bucket",
}


def test_dashboard_shows_what_operators_need():
    exprs = [e for _, e in panel_exprs(dashboard())]
    missing = [what for what, pattern in REQUIRED_PANELS.items() if not any(re.search(pattern, e) for e in exprs)]
    assert missing == []


def test_metric_names_are_documented():
    """Every flowlike metric a panel, variable or rule uses is in docs/metrics.md (which lists what the code exposes)."""
    d = dashboard()
    texts = [e for _, e in panel_exprs(d)] + [v["query"]["query"] for v in d["templating"]["list"]
                                              if isinstance(v.get("query"), dict)]
    texts += [r["expr"] for r in alerts(rules_spec()).values()]
    types = metric_types()
    used = {family(n, types) for t in texts for n in METRIC_RE.findall(t)}
    assert used - set(types) == set(), "unknown metrics"


def test_panel_queries_use_metrics_the_right_way():
    types = metric_types()
    problems = {p["title"]: usage_problems(e, types) for p, e in panel_exprs(dashboard())}
    assert {t: v for t, v in problems.items() if v} == {}


def test_panel_queries_parse_as_promql(tmp_path):
    proc = check_expressions([concrete(e) for _, e in panel_exprs(dashboard())], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# Queue gauge series for the replica check below: labels and a value each (what a replica reports).
QUEUE_SERIES = {
    "flowlike_dispatcher_queue_waiting": [({"tenant": "acme", "priority": "5"}, 4),
                                          ({"tenant": "acme", "priority": "7"}, 2),
                                          ({"tenant": "beta", "priority": "5"}, 3)],
    "flowlike_dispatcher_queue_oldest_waiting_age_seconds": [({"tenant": "acme"}, 900), ({"tenant": "beta"}, 60)],
    "flowlike_dispatcher_queue_running": [({"tenant": "acme"}, 3), ({"tenant": "beta"}, 10)],
    "flowlike_dispatcher_queue_tenant_limit": [({"tenant": "acme"}, 10), ({"tenant": "beta"}, 10)],
    "flowlike_dispatcher_queue_running_global": [({}, 13)],
    "flowlike_dispatcher_queue_global_limit": [({}, 100)],
    "flowlike_dispatcher_queue_dead_letters": [({}, 7)],
    "flowlike_dispatcher_queue_dispatchers_alive": [({}, 0)],
}


def replica_check(queries, tmp_path):
    """promtool evaluates each query (a function of the namespace) over one replica's gauges (namespace "one")
    and over two replicas reporting the same values (namespace "two"): the results must be the same."""
    series = []
    for name, entries in QUEUE_SERIES.items():
        for labels, value in entries:
            for namespace, pod in (("one", "a"), ("two", "a"), ("two", "b")):
                all_labels = {**labels, "namespace": namespace, "pod": pod}
                text = ", ".join(f'{k}="{v}"' for k, v in all_labels.items())
                series.append({"series": f"{name}{{{text}}}", "values": f"{value}x10"})
    checks = []
    for query in queries:
        a, b = f"({query('one')})", f"({query('two')})"
        checks.append({"expr": f"count({b} == {a}) == bool count({a})", "eval_time": "5m",
                       "exp_samples": [{"labels": "{}", "value": 1}]})
        checks.append({"expr": f"count({b}) == bool count({a})", "eval_time": "5m",
                       "exp_samples": [{"labels": "{}", "value": 1}]})
    test = {"rule_files": [], "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": checks}]}
    (tmp_path / "replicas.test.yaml").write_text(yaml.safe_dump(test, width=1000))
    return run_promtool("test", "rules", "replicas.test.yaml", cwd=tmp_path)


def queue_only_queries():
    types = metric_types()
    gauges = queue_gauges(types)
    queries = [(p["title"], lambda ns, e=e: concrete(e, ns)) for p, e in panel_exprs(dashboard())
               if set(METRIC_RE.findall(e)) <= gauges]
    spec = rules_spec({"dispatcherSelector": 'namespace="__NS__"'})
    queries += [(name, lambda ns, e=r["expr"]: e.replace("__NS__", ns)) for name, r in alerts(spec).items()
                if set(METRIC_RE.findall(r["expr"])) <= gauges]
    return queries


def test_queue_gauges_are_not_added_up_across_replicas(tmp_path):
    queries = queue_only_queries()
    names = {name for name, _ in queries}
    assert {"FlowLikeWorkWaitingBelowLimit", "FlowLikeNoDispatcher", "Waiting per tenant"} <= names, names
    assert set(METRIC_RE.findall(" ".join(q("one") for _, q in queries))) <= set(QUEUE_SERIES)
    proc = replica_check([q for _, q in queries], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_replica_check_catches_a_sum(tmp_path):
    proc = replica_check([lambda ns: f'sum by (tenant) (flowlike_dispatcher_queue_running{{namespace="{ns}"}})'],
                         tmp_path)
    assert proc.returncode != 0, proc.stdout
