"""Copies the values tables of docs/chart-values.md into the chart's README.md (between the markers).

Run `python3 tests/chart/chart_readme.py` after editing docs/chart-values.md; test_docs.py checks they agree."""

import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "chart-values.md"
README = ROOT / "charts" / "flow-like" / "README.md"
BEGIN = "<!-- values tables: copied from docs/chart-values.md by tests/chart/chart_readme.py -->"
END = "<!-- end of values tables -->"


def tables(doc_text):
    """Everything from the first section heading on: the tables, one section per top-level key."""
    return doc_text[doc_text.index("\n## ") + 1:].rstrip() + "\n"


def readme_tables(readme_text):
    return readme_text.split(BEGIN + "\n", 1)[1].split(END, 1)[0].replace("\n### ", "\n## ").replace("### ", "## ", 1)


def with_tables(readme_text, doc_text):
    head, rest = readme_text.split(BEGIN + "\n", 1)
    tail = rest.split(END, 1)[1]
    # One heading level down: the README's own sections are level 2.
    body = tables(doc_text).replace("\n## ", "\n### ")
    body = "### " + body[3:] if body.startswith("## ") else body
    return head + BEGIN + "\n" + body + END + tail


if __name__ == "__main__":
    README.write_text(with_tables(README.read_text(), DOC.read_text()))
    print(f"updated {README.relative_to(ROOT)}")
