"""Traces in the chart: `tracing.otlpEndpoint` reaches the API and the dispatcher (which passes it on to the
executor Jobs) as OTEL_EXPORTER_OTLP_ENDPOINT, and with NetworkPolicies on, the API, dispatcher and executor pods
may reach the collector; with tracing off, none of it is there."""

from conftest import by_kind, component, pod_spec


def env(objects, name):
    (workload,) = [o for o in by_kind(objects, "Deployment") if component(o) == name]
    (container,) = [c for c in pod_spec(workload)["containers"] if c["name"] == name]
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def otlp_egress(policy):
    return [rule for rule in policy["spec"].get("egress", [])
            if any(p.get("port") == 4318 for p in rule.get("ports", []))]


def test_the_endpoint_reaches_the_api_and_the_dispatcher(rendered):
    for name in ("api", "dispatcher"):
        assert env(rendered["tracing"], name)["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4318"
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env(rendered["auto"], name)


def test_network_policies_let_the_pods_reach_the_collector(rendered):
    policies = {p["metadata"]["name"].rsplit("-", 1)[-1]: p for p in by_kind(rendered["tracing"], "NetworkPolicy")}
    for name in ("api", "dispatcher", "executor"):
        rules = otlp_egress(policies[name])
        assert [r["to"] for r in rules] == [[{"ipBlock": {"cidr": "10.96.0.0/12"}}]], name
    for name in ("migrate", "postgresql", "redis"):
        if name in policies:
            assert otlp_egress(policies[name]) == [], name
    # Policies without tracing have no such rule.
    for policy in by_kind(rendered["network-policies"], "NetworkPolicy"):
        assert otlp_egress(policy) == [], policy["metadata"]["name"]
