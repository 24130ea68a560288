"""The package's import graph, read statically with `ast`: no cycle, no upward import, approaches apart.

Every `import`/`from ... import` of a `clinical_ner` module counts, wherever it sits (function-level imports
and `TYPE_CHECKING` blocks included), so a lazy import cannot hide a layering violation.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "clinical_ner"

# Bottom to top; a module may import its own component or any component of a lower layer, nothing else.
LAYERS: list[set[str]] = [
    # "" = the package's own __init__
    {"", "errors", "files", "console"},
    {"run.record", "cache"},
    {"config"},
    {"data", "reports"},  # reports read results.json files only
    {"metrics", "models"},
    {"planning", "training"},
    {"pretrain", "approaches.tokencls", "approaches.seq2seq", "approaches"},
    {"analysis", "run", "checks"},  # checks: commands a user runs on the code or a GPU
    {"distributed"},  # which launcher runs a job's stages (run.pipeline) on one or several devices
    {"train", "predict", "evaluate"},  # entry points
    {"cli"},  # the `clinical-ner` command over them (it imports them by name, when a command runs)
    {"__main__"},  # python -m clinical_ner
]
LAYER = {component: rank for rank, names in enumerate(LAYERS) for component in names}
# Components that must never import these third-party roots (the design notes' nevers).
FORBIDDEN_THIRD_PARTY = {
    "config": {"lightning", "torch", "transformers", "peft"},  # the schema knows no model (reports read it)
    "data": {"lightning"},  # data knows no training loop
    "metrics": {"lightning", "torch", "transformers"},  # scoring is pure
    "models": {"lightning"},  # models know no Lightning
    "reports": {"lightning", "torch", "transformers", "peft"},  # reports read results.json only
    "run.record": {"lightning", "torch", "transformers", "peft"},  # read by reports
}


def module_name(path: Path) -> str:
    """`clinical_ner/a/b.py` -> `clinical_ner.a.b`; a package's `__init__.py` -> the package."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# Sub-packages that are a layer unit of their own (below their parent package's layer, or beside a sibling)
NESTED = {"run.record"}


def component(module: str) -> str:
    """The layer unit of a module: its top-level name below the package, `approaches.<name>`, or a NESTED
    sub-package."""
    parts = module.split(".")[1:]
    if parts[:1] == ["approaches"] and len(parts) > 1 or ".".join(parts[:2]) in NESTED:
        return ".".join(parts[:2])
    return parts[0] if parts else ""


def read_imports() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module -> package modules it imports, module -> third-party top-level names it imports)."""
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    internal: dict[str, set[str]] = {}
    external: dict[str, set[str]] = {}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        internal[module], external[module] = set(), set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [(alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    anchor = module.split(".")[: len(module.split(".")) - node.level + is_package]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [(base, alias.name) for alias in node.names]
            else:
                continue
            for base, name in targets:
                if base.split(".")[0] != "clinical_ner":
                    external[module].add(base.split(".")[0])
                    continue
                # `from clinical_ner.models import quantize` imports the module clinical_ner.models.quantize
                target = f"{base}.{name}" if name and f"{base}.{name}" in files else base
                if target != module:
                    internal[module].add(target)
    return internal, external


GRAPH, THIRD_PARTY = read_imports()


# The only modules at the package's top level: the user entry points and the shared error type; everything else
# lives in a package named for its job, so the tree answers "where is X".
TOP_LEVEL = {"__init__", "__main__", "cli", "train", "predict", "evaluate", "errors"}


def test_top_level_holds_only_entry_points() -> None:
    loose = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem not in TOP_LEVEL)
    assert not loose, f"modules loose at the top of clinical_ner/ (give each a package): {loose}"


def test_every_package_has_an_init() -> None:
    """A folder of modules without `__init__.py` is a namespace package: it imports, but pip leaves it out."""
    missing = sorted(
        str(folder.relative_to(PACKAGE))
        for folder in PACKAGE.rglob("*")
        if folder.is_dir()
        and folder.name != "__pycache__"
        and any(folder.glob("*.py"))
        and not (folder / "__init__.py").is_file()
    )
    assert not missing, f"packages without __init__.py: {missing}"


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(m for m in GRAPH if component(m) not in LAYER)
    assert not unplaced, f"modules in no layer of tests/architecture/test_layout.py: {unplaced}"


def test_no_import_cycle() -> None:
    try:
        graphlib.TopologicalSorter(GRAPH).prepare()
    except graphlib.CycleError as err:
        pytest.fail(f"import cycle: {' -> '.join(err.args[1])}")


def upward_edges(graph: dict[str, set[str]]) -> list[str]:
    """Edges to another component that is not in a lower layer (unplaced components count as violations)."""
    return [
        f"{source} -> {target}"
        for source, targets in sorted(graph.items())
        for target in sorted(targets)
        if component(source) != component(target)
        and LAYER.get(component(target), 99) >= LAYER.get(component(source), -1)
    ]


def cross_approach_edges(graph: dict[str, set[str]]) -> list[str]:
    """Edges from one approach's folder into another's."""
    return [
        f"{source} -> {target}"
        for source, targets in sorted(graph.items())
        for target in sorted(targets)
        if component(source).startswith("approaches.")
        and component(target).startswith("approaches.")
        and component(source) != component(target)
    ]


def test_no_upward_or_sideways_import() -> None:
    bad = upward_edges(GRAPH)
    assert not bad, "imports that go up or across layers:\n" + "\n".join(bad)


def test_approaches_never_import_each_other() -> None:
    bad = cross_approach_edges(GRAPH)
    assert not bad, "one approach imports another:\n" + "\n".join(bad)


def test_the_checks_flag_the_old_circle() -> None:
    """The edges of the import circle this layout removed are all flagged."""
    old = {
        "clinical_ner.run.ranks": {"clinical_ner.train"},
        "clinical_ner.training.finetune": {"clinical_ner.run.ranks"},
        "clinical_ner.approaches.seq2seq.decoding": {"clinical_ner.approaches.tokencls.inference"},
        "clinical_ner.data.tagging": {"clinical_ner.approaches.seq2seq.units"},
    }
    assert len(upward_edges(old)) == 4
    assert cross_approach_edges(old) == [
        "clinical_ner.approaches.seq2seq.decoding -> clinical_ner.approaches.tokencls.inference"
    ]


def test_forbidden_third_party_imports() -> None:
    bad = [
        f"{module} imports {name}"
        for module, names in sorted(THIRD_PARTY.items())
        for name in sorted(names & FORBIDDEN_THIRD_PARTY.get(component(module), set()))
    ]
    assert not bad, "imports the design notes rule out:\n" + "\n".join(bad)


def test_reader_sees_lazy_and_package_imports() -> None:
    """The graph reader finds function-level and package-style imports (else the tests above prove little)."""
    assert "clinical_ner.run.pipeline" in GRAPH["clinical_ner.distributed.worker"]  # imported inside main
    assert "clinical_ner.models.quantize" in GRAPH["clinical_ner.training.fit"]  # from models import quantize
    assert LAYER[component("clinical_ner.distributed.launch")] > LAYER[component("clinical_ner.run.pipeline")]


# Names of a run folder's entries: only clinical_ner/run/record/folder.py may spell them (the rest ask RunFolder).
RUN_FOLDER_MODULE = "clinical_ner.run.record.folder"
RUN_FOLDER_NAMES = {
    "results.json",
    "checkpoints",
    "last.ckpt",
    "best-{epoch:02d}",
    "predictions",
    "clinical_ner.json",
    "csv_pretrain",
    "ranks",
}


def run_folder_literals(path: Path) -> list[str]:
    """String constants of a module that are exactly the name of a run-folder entry."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in RUN_FOLDER_NAMES
    ]


def test_run_folder_paths_are_named_in_one_module() -> None:
    bad = [
        f"{module_name(path)}: {literal!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if module_name(path) != RUN_FOLDER_MODULE
        for literal in run_folder_literals(path)
    ]
    assert not bad, f"run-folder names spelled outside {RUN_FOLDER_MODULE}:\n" + "\n".join(bad)


def test_parents_of_nested_components_import_nothing() -> None:
    """Importing `clinical_ner.run.record.folder` runs `clinical_ner/run/__init__.py` first: if that imported
    anything, reading the record from a low layer would load the layer above it."""
    for nested in NESTED:
        parent = "clinical_ner." + nested.rsplit(".", 1)[0]
        assert not GRAPH[parent], f"{parent} imports {sorted(GRAPH[parent])}"
