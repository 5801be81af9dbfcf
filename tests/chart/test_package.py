"""`helm package` works and the package is the chart: its version scheme, metadata and contents."""

import io
import re
import tarfile
import tomllib

import helm_python
import yaml
from helm_python import Chart

from cases import AUTO, CASES
from conftest import CHART, NAMESPACE, RELEASE, ROOT


def chart_yaml():
    return yaml.safe_load((CHART / "Chart.yaml").read_text())


def test_version_scheme_is_tied_to_the_app_version():
    meta = chart_yaml()
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["version"]
    assert meta["appVersion"] == workspace, "appVersion is the binaries' version (Cargo.toml workspace.package)"
    assert meta["version"] == meta["appVersion"], "chart version == appVersion (docs/install-kubernetes.md)"
    assert re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", meta["version"]), "SemVer 2, no build metadata"
    for line in meta["annotations"]["artifacthub.io/images"].splitlines():
        if "ghcr.io/flow-like/" in line:
            assert line.strip().endswith(f":{meta['appVersion']}"), line


def test_metadata_has_real_sources_and_no_dangling_icon():
    meta = chart_yaml()
    assert "icon" not in meta or (CHART / meta["icon"]).exists()
    assert meta["sources"] and all(s.startswith("https://") for s in meta["sources"])
    assert meta["annotations"]["artifacthub.io/license"] == "Apache-2.0"
    assert (CHART / "LICENSE").read_text() == (ROOT / "LICENSE").read_text(), "the chart ships the project's licence"
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["license"]
    assert cargo == "Apache-2.0"


def test_helm_package_builds_an_installable_archive(tmp_path):
    path = helm_python.package(str(CHART), destination=str(tmp_path))
    version = chart_yaml()["version"]
    assert path.endswith(f"flow-like-{version}.tgz")
    with tarfile.open(path) as tar:
        names = set(tar.getnames())
    for required in ("Chart.yaml", "values.yaml", "values.schema.json", "README.md", "LICENSE",
                     "templates/NOTES.txt", "templates/_helpers.tpl", "templates/tests/test-readyz.yaml"):
        assert f"flow-like/{required}" in names, required
    assert all(n.startswith("flow-like/") for n in names)
    assert not [n for n in names if re.search(r"(\.swp|\.bak|~|\.DS_Store|/\.git/)", n)]
    data = open(path, "rb").read()
    packaged = Chart.load_archive(data)
    for case in ("auto", "external"):
        assert packaged.render(CASES[case], name=RELEASE, namespace=NAMESPACE, is_install=True) == \
            Chart.load(str(CHART)).render(CASES[case], name=RELEASE, namespace=NAMESPACE, is_install=True)
    report = helm_python.lint(path, AUTO, strict=True, namespace=NAMESPACE, kube_version="v1.33.0")
    assert report["errors"] == [], report
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        meta = yaml.safe_load(tar.extractfile("flow-like/Chart.yaml").read())
    assert meta["version"] == version and "icon" not in meta
