"""docs/chart-values.md documents every value of values.yaml with its current default."""

import json

import yaml

from conftest import CHART, ROOT

# Free-form maps and lists are documented as one value.
OPAQUE = {"podSecurityContext", "securityContext", "resources", "nodeSelector", "tolerations", "affinity",
          "annotations", "podAnnotations", "podLabels", "overhead", "scheduling", "podSelectorLabels",
          "topologySpreadConstraints", "extraEnv", "hosts", "tls", "imagePullSecrets", "ingressFrom", "metricsFrom",
          "extraEgress", "accessModes", "cidrs", "ports"}


def leaves(prefix, value):
    for key, child in value.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(child, dict) and key not in OPAQUE:
            yield from leaves(path, child)
        else:
            yield path, child


def test_every_value_is_documented_with_its_default():
    doc = (ROOT / "docs" / "chart-values.md").read_text()
    rows = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.split(" | ")]
        if line.startswith("| `") and len(cells) >= 3:
            rows[cells[0].lstrip("| ").strip("`")] = cells[1].strip("`").replace("\\|", "|")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    documented = dict(leaves("", values))
    assert set(rows) == set(documented), set(rows) ^ set(documented)
    for path, default in documented.items():
        assert json.loads(rows[path]) == default, path
