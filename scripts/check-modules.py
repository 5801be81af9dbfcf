#!/usr/bin/env python3
"""Checks the shape of the product crates' source (shared, api, dispatcher, executor, cli):

1. No import circle between files. An edge A -> B means file A names module B (a `use` or a path in code:
   `crate::x::y`, `super::x`). Edges between a module and its own ancestors or descendants are not counted (a
   parent declares its children, and children may `use super::*`); every other cycle is reported.
2. No source file over 400 lines unless its header (the `//!` lines at its top) says why, in a line containing
   "over 400 lines". Unit-test files (`*_tests.rs`) are exempt.

Usage: scripts/check-modules.py   (exit 1 and a report when either fails)
"""

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CRATES = ["shared", "api", "dispatcher", "executor", "cli"]
MAX_LINES = 400
PATH = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP = re.compile(r"\buse\s+(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*)\};", re.S)
PATH_ATTR = re.compile(r'#\[path\s*=\s*"([^"]+)"\]\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+([a-z_0-9]+)\s*;')


def module_files(src: Path):
    """Maps each module path (tuple of names; () is the crate root) to its file."""
    modules = {}
    for file in src.rglob("*.rs"):
        rel = file.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        if parts in (["lib"], ["main"]):
            parts = []
        elif parts[-1] == "mod":
            parts = parts[:-1]
        modules.setdefault(tuple(parts), file)
    # `#[path = "x.rs"] mod y;` declared in a file: the module is y under the declaring module.
    for path, file in list(modules.items()):
        for target, name in PATH_ATTR.findall(file.read_text()):
            target_file = (file.parent / target).resolve()
            for other, other_file in list(modules.items()):
                if other_file.resolve() == target_file and other != path + (name,):
                    del modules[other]
                    modules[path + (name,)] = other_file
    return modules


def strip_comments(text: str) -> str:
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def resolve(modules, current, base, rest):
    """The deepest module the path `base::rest` names, seen from module `current`."""
    if base == "crate":
        path = ()
    else:
        path = current[:-1] if current else ()
    names = [n for n in rest.split("::") if n]
    while names and names[0] == "super":
        path = path[:-1]
        names.pop(0)
    best = path
    for name in names:
        if path + (name,) in modules:
            path = path + (name,)
            best = path
        else:
            break
    return best


def related(a, b):
    return a[: len(b)] == b or b[: len(a)] == a


def edges(modules):
    graph = {m: set() for m in modules}
    for module, file in modules.items():
        text = strip_comments(file.read_text())
        targets = []
        for base, prefix, group in USE_GROUP.findall(text):
            for item in re.split(r"[,\s]+", re.sub(r"\{[^}]*\}", "", group)):
                item = item.split(" as ")[0].strip()
                if item and item not in ("self", "*"):
                    targets.append((base, prefix + "::" + item))
                elif item == "self":
                    targets.append((base, prefix))
        for base, rest in PATH.findall(text):
            targets.append((base, rest))
        for base, rest in targets:
            target = resolve(modules, module, base, rest)
            if target != module and not related(module, target):
                graph[module].add(target)
    return graph


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return found


def name(crate, module):
    return f"{crate}::{'::'.join(module) or '(root)'}"


def main():
    problems = []
    files = 0
    for crate in CRATES:
        src = REPO / crate / "src"
        modules = module_files(src)
        files += len(modules)
        for component in cycles(edges(modules)):
            problems.append("import circle: " + " <-> ".join(sorted(name(crate, m) for m in component)))
        for file in sorted(src.rglob("*.rs")):
            if file.name.endswith("_tests.rs") or file.name == "tests.rs":
                continue
            text = file.read_text()
            lines = text.count("\n")
            header = "\n".join(line for line in text.splitlines()[:40] if line.startswith("//!"))
            if lines > MAX_LINES and "over 400 lines" not in header:
                problems.append(f"{file.relative_to(REPO)}: {lines} lines, and its header does not say why")
    for problem in problems:
        print(problem)
    print(f"check-modules: {files} modules in {len(CRATES)} crates, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
