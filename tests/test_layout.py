"""The package's shape: detectors and families are plug-ins the shared machinery knows only by
their protocols, the layers import downwards, and no module imports another that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hitgen.detectors import REGISTRY as DETECTORS
from hitgen.families import REGISTRY as FAMILIES

SRC = Path(__file__).resolve().parents[1] / "src" / "hitgen"


def modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = modules()


def imports_of(name: str) -> set[str]:
    """The hitgen modules `name` imports, at any depth of its code (lazy imports too)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([node.module] if node.module else []))
            for a in node.names:
                out.add(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base)
    return {m for m in out if m in MODULES and m != name}


def test_no_import_cycles():
    graph = {m: imports_of(m) for m in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path[path.index(n) :], n]))
            if n not in state:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


@pytest.mark.parametrize(
    ("layer", "may_import"),
    [
        ("hitgen.core", ("hitgen.core", "hitgen")),
        ("hitgen.nn", ("hitgen.nn", "hitgen.core")),
        ("hitgen.families", ("hitgen.families", "hitgen.nn", "hitgen.core", "hitgen.detectors")),
        (
            "hitgen.detectors",
            (
                "hitgen.detectors",
                "hitgen.core",
                "hitgen.evaluation.stats",
                "hitgen.evaluation.classifier",
                "hitgen.evaluation.plotting",
                "hitgen.evaluation.report",
                "hitgen.evaluation.info",
            ),
        ),
    ],
)
def test_layers_import_downwards(layer, may_import):
    for m in MODULES:
        if m == layer or m.startswith(layer + "."):
            for n in imports_of(m):
                assert n == "hitgen" or any(n == a or n.startswith(a + ".") for a in may_import if a != "hitgen"), f"{m} imports {n}"


def _own_folder(path: Path) -> str | None:
    rel = path.relative_to(SRC).parts
    return rel[1] if len(rel) > 2 and rel[0] in ("detectors", "families") else None


def test_no_detector_or_family_name_outside_its_own_folder():
    """Shared code never compares (or otherwise spells) a plug-in's name: it asks the registry."""
    names = {d.name for d in DETECTORS} | {f.name for f in FAMILIES}
    assert {"clas12-ecal", "odd-tracker", "clas12-gpt", "track-gpt", "siliconai"} <= names
    for path in MODULES.values():
        if _own_folder(path):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert node.value not in names, f"{path.relative_to(SRC)}:{node.lineno} spells {node.value!r}"


def test_every_plugin_folder_is_registered():
    for kind, registry in (("detectors", DETECTORS), ("families", FAMILIES)):
        folders = {p.name for p in (SRC / kind).iterdir() if (p / "__init__.py").is_file()}
        assert len(folders) == len(registry.names()), (kind, folders, registry.names())
