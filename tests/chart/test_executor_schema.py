"""values.schema.json refuses the executor scheduling shapes the API server refuses (the dispatcher's start-up
check refuses the same settings with the API server's message), and accepts the valid ones."""

import pytest
from helm_python.errors import HelmValuesError

from cases import CASES
from conftest import render

BASE = CASES["auto"]


def with_executor(**executor):
    return {**BASE, "executor": {**BASE.get("executor", {}), **executor}}


NODE_TERM = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["batch"]}]}]}}}


@pytest.mark.parametrize("executor", [
    {"tolerations": [{"key": "pool", "operator": "Exists", "effect": "NoRun"}]},
    {"tolerations": [{"key": "pool", "operator": "Exists", "value": "batch"}]},
    {"tolerations": [{"key": "pool", "operator": "Equals", "value": "batch"}]},
    {"tolerations": [{"key": "bad key", "operator": "Exists"}]},
    {"tolerations": [{"key": "pool", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 60}]},
    {"nodeSelector": {"pool": "batch jobs"}},
    {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "pool", "operator": "Equals", "values": ["batch"]}]}]}}}},
    {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "pool", "operator": "In"}]}]}}}},
    {"priorityClassName": "High!"},
])
def test_invalid_scheduling_values_are_refused(executor):
    with pytest.raises(HelmValuesError) as err:
        render(with_executor(**executor))
    assert "executor" in str(err.value), str(err.value)


def test_valid_scheduling_values_render():
    render(with_executor(
        tolerations=[{"key": "pool", "operator": "Equal", "value": "batch", "effect": "NoSchedule"},
                     {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}],
        nodeSelector={"kubernetes.io/os": "linux"},
        affinity=NODE_TERM,
        priorityClassName="flow-like-batch",
    ))
