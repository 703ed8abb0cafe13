"""The code keeps its shape: the import contracts of pyproject.toml ([tool.importlinter]), no
import cycles (imports inside functions included), and no module longer than 500 lines."""

from __future__ import annotations

import textwrap
from pathlib import Path

import grimp
import networkx as nx
from importlinter import api as importlinter_api
from importlinter.application import use_cases

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("caingan", "app", "train")
MAX_LINES = 500


def test_import_contracts_are_declared_and_kept(capsys):
    contracts = importlinter_api.read_configuration(str(REPO / "pyproject.toml"))["contracts_options"]
    kinds = sorted(c["type"] for c in contracts)
    assert kinds == ["forbidden", "layers", "layers"], kinds
    kept = use_cases.lint_imports(config_filename=str(REPO / "pyproject.toml"), cache_dir=None,
                                  no_logo=True)
    report = capsys.readouterr().out
    assert kept, report


def import_cycles(*packages: str) -> list[list[str]]:
    """One cycle per group of mutually importing modules; grimp reads every import statement,
    those inside functions too."""
    graph = grimp.build_graph(*packages, cache_dir=None)
    g = nx.DiGraph()
    for module in graph.modules:
        g.add_edges_from((module, imported) for imported in graph.find_modules_directly_imported_by(module)
                         if imported != module)
    cycles = []
    for group in nx.strongly_connected_components(g):
        if len(group) > 1:
            cycle = [a for a, _ in nx.find_cycle(g.subgraph(group))]
            start = cycle.index(min(cycle))
            cycles.append(cycle[start:] + cycle[:start])
    return sorted(cycles)


def test_no_import_cycles():
    cycles = import_cycles(*PACKAGES)
    assert not cycles, "\n".join(" → ".join(c + c[:1]) for c in cycles)


def test_a_cycle_through_an_import_inside_a_function_is_found(tmp_path, monkeypatch):
    pkg = tmp_path / "cyclepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from cyclepkg import b\n")
    (pkg / "b.py").write_text(textwrap.dedent("""
        def later():
            from cyclepkg import a
            return a
    """))
    (pkg / "c.py").write_text("from cyclepkg import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycles("cyclepkg") == [["cyclepkg.a", "cyclepkg.b"]]


def test_no_module_is_over_500_lines():
    long = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            n = len(path.read_text(encoding="utf-8").splitlines())
            if n > MAX_LINES:
                long[str(path.relative_to(REPO))] = n
    assert not long, f"modules over {MAX_LINES} lines: {long}"
