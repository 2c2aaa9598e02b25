"""The architecture of DESIGN.md, checked: imports run downward only, and there is no import cycle.

Every ``import`` in every module of ``src/feedwise`` counts, including those inside functions
(a lazy import is still a dependency). Layers, top to bottom::

    cli, options, demo, studies/*/cli  the command line and the demo
    report                             the page; reads files, never the engine
    studies                            one home per study (request, run, summary, report)
    parallel                           strategies of the engine's one loop
    engine                             the one Trainer
    feeds                              which examples, what weights
    emphasis, subset, flagging, monitor   engine-free public APIs
    scores                             per-example scores
    workloads
    data, models
    results, files, errors, progress, seeds, stats, config, report.sections, report.plots

A module may import its own layer and the layers below it, never above.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
LAYERS = [
    {"errors", "progress", "files", "results", "seeds", "stats", "config",
     "report.sections", "report.plots"},   # building blocks of every study's report part
    {"data", "models"},
    {"workloads"},
    {"scores"},
    {"emphasis", "subset", "flagging", "monitor"},
    {"feeds"},
    {"engine"},
    {"parallel"},
    {"studies"},
    {"report"},
    {"cli", "options", "demo", "__init__", "__main__"},
]


def layer_of(module: str) -> int:
    parts = module.split(".")
    if len(parts) >= 4 and parts[1] == "studies" and parts[3] == "cli":
        return len(LAYERS) - 1             # a study's command line is part of the CLI layer
    top = ".".join(parts[1:3]) if ".".join(parts[1:3]) in LAYERS[0] else (parts[1] if len(parts) > 1 else "__init__")
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module}: its top-level name '{top}' has no layer in tests/test_architecture.py")


def modules() -> dict[str, Path]:
    out = {}
    for p in sorted((SRC / "feedwise").rglob("*.py")):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = pkg.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known and "." in t:
                t = t.rsplit(".", 1)[0]
            if t in known and t != name and t.startswith("feedwise"):
                found.add(t)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def test_imports_run_downward():
    bad = []
    for mod, deps in graph().items():
        for d in deps:
            if d == "feedwise":      # the package's own __init__ (version only)
                continue
            if layer_of(d) > layer_of(mod):
                bad.append(f"{mod} -> {d}")
    assert not bad, "upward imports:\n" + "\n".join(sorted(bad))


def test_no_import_cycles():
    g = graph()
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def strong(v):   # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in g:
        if v not in index:
            strong(v)
    # a package importing its own submodules (for its public names) is not a cycle of design
    cycles = [c for c in cycles if not all(m.startswith(min(c, key=len) + ".") or m == min(c, key=len) for m in c)]
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_report_never_reaches_the_engine():
    g = graph()
    start = [m for m in g if m.startswith("feedwise.report") or m.endswith(".report")]
    seen, todo = set(), list(start)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(g.get(m, ()))
    reached = sorted(m for m in seen if m.startswith(("feedwise.engine", "feedwise.parallel", "feedwise.feeds")))
    assert not reached, f"the report imports the engine: {reached}"


# --------------------------------------------------------------------------- the README's layout
LAYOUT_BEGIN, LAYOUT_END = "<!-- layout:begin", "<!-- layout:end -->"
ROLES = {
    "feedwise": "cli, options and demo on top; the one engine; config, seeds, results, files, stats below",
    "feedwise.data": "datasets in memory or read lazily, label noise, the options that define a study's data",
    "feedwise.scores": "per-example scores shared by emphasis, acquisition and flagging",
    "feedwise.emphasis": "Active Bias for any loop: prediction history, methods, sampler",
    "feedwise.subset": "ensemble acquisition: streaming scorer, checkpoint ensembles, selection",
    "feedwise.feeds": "feeders (which examples, what weights) and their registry",
    "feedwise.parallel": "strategies of the engine's loop: sync DDP, local SGD, Hogwild, trials trained together; launching; alpha-beta model",
    "feedwise.report": "the page (page.py) and the blocks every study's report part uses",
    "feedwise.studies": "the STUDIES registry and shared plumbing; below, one home per study",
}


def layout_text() -> str:
    """The package layout with each module's line count, as the README shows it."""
    groups: dict[str, list[tuple[str, int]]] = {}
    for name, path in modules().items():
        if path.name == "__init__.py":
            continue
        pkg, mod = name.rsplit(".", 1)
        groups.setdefault(pkg, []).append((mod, len(path.read_text().splitlines())))
    lines = ["```"]
    for pkg in sorted(groups, key=lambda p: (p != "feedwise", p)):
        mods = sorted(groups[pkg])
        role = ROLES.get(pkg) or f"the {pkg.rsplit('.', 1)[1].replace('_', '-')} study"
        lines.append(f"{pkg.replace('feedwise', 'src/feedwise', 1).replace('.', '/')}/   # {role}")
        lines.append("    " + "  ".join(f"{m}.py {n}" for m, n in mods))
    lines.append("```")
    return "\n".join(lines)


def test_the_readme_layout_is_the_code():
    readme = (SRC.parent / "README.md").read_text()
    begin = readme.index(LAYOUT_BEGIN)
    block = readme[readme.index("\n", begin) + 1:readme.index(LAYOUT_END)].strip()
    assert block == layout_text(), ("README's layout is stale: run python tests/test_architecture.py --write")


if __name__ == "__main__":   # python tests/test_architecture.py --write: refresh the README's layout block
    import sys

    if "--write" in sys.argv:
        path = SRC.parent / "README.md"
        text = path.read_text()
        begin = text.index(LAYOUT_BEGIN)
        start, end = text.index("\n", begin) + 1, text.index(LAYOUT_END)
        path.write_text(text[:start] + layout_text() + "\n" + text[end:])
    else:
        print(layout_text())
