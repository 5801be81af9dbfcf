"""docs/chart-values.md documents every value of values.yaml with its current default, and the chart's README.md
carries the same tables."""

import json

import yaml

from chart_readme import DOC, README, readme_tables, tables
from conftest import CHART

# Free-form maps and lists are documented as one value.
OPAQUE = {"podSecurityContext", "securityContext", "resources", "nodeSelector", "tolerations", "affinity",
          "annotations", "podAnnotations", "podLabels", "overhead", "scheduling", "podSelectorLabels",
          "topologySpreadConstraints", "extraEnv", "extraEnvFrom", "extraVolumes", "extraVolumeMounts",
          "imagePullSecrets", "ingressFrom", "metricsFrom", "extraEgress", "accessModes", "cidrs", "ports",
          "labels", "alertLabels"}


def leaves(prefix, value):
    for key, child in value.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(child, dict) and key not in OPAQUE:
            yield from leaves(path, child)
        else:
            yield path, child


def rows(text):
    found = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(" | ")]
        if line.startswith("| `") and len(cells) >= 3:
            found[cells[0].lstrip("| ").strip("`")] = cells[1].strip("`").replace("\\|", "|")
    return found


def check(text):
    documented = dict(leaves("", yaml.safe_load((CHART / "values.yaml").read_text())))
    found = rows(text)
    assert set(found) == set(documented), set(found) ^ set(documented)
    for path, default in documented.items():
        assert json.loads(found[path]) == default, path


def test_every_value_is_documented_with_its_default():
    check(DOC.read_text())


def test_chart_readme_documents_every_value():
    check(README.read_text())


def test_chart_readme_tables_match_the_reference():
    assert readme_tables(README.read_text()) == tables(DOC.read_text()), \
        "run `python3 tests/chart/chart_readme.py` to copy docs/chart-values.md into the chart README"
