"""The layout's rules (docs/architecture.md), checked by reading every module's imports."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "fastdraft_dag"

# A package may import its own modules and packages of a lower layer, never a higher one; the
# stages (layer 4) never import each other: what two stages share lives in a lower layer.
LAYERS = {
    "core": 0,
    "storage": 1, "reporting": 1, "sources": 1,
    "targets": 2, "prompts": 2, "draft": 2,
    "training": 3, "openvino": 3,
    "data": 4, "distill": 4, "evaluation": 4,
    "config": 5,
    "resources": 6, "assets": 7,
    "definitions": 8, "cli": 9,
}  # fmt: skip
STAGES = {"data", "distill", "evaluation"}
DAGSTER_LAYER = {"assets", "resources", "definitions", "cli"}
# Function-local imports of the project's own modules, each with its reason.
LAZY_ALLOWED = {
    ("cli", "assets"), ("cli", "definitions"), ("cli", "config"), ("cli", "reporting"),
    ("cli", "storage"), ("cli", "targets"), ("cli", "resources"), ("cli", "evaluation"),
    # `fastdraft --help` stays fast
    ("training", "training.gaudi"),  # optional Gaudi backend: optimum-habana only on Gaudi
}  # fmt: skip


def modules() -> dict[str, ast.Module]:
    out = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).with_suffix("")
        name = ".".join(p for p in rel.parts if p != "__init__")
        out[name or "__init__"] = ast.parse(path.read_text(), str(path))
    return out


def imports(tree: ast.Module) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import in the file."""
    top = {id(n) for n in tree.body}
    top |= {id(n) for node in tree.body if isinstance(node, ast.If) for n in node.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # `from a.b import c`: c may be a module (a.b.c) or a name in a.b; keep both forms.
            found += [(f"{node.module}.{a.name}", id(node) in top) for a in node.names]
    return found


def own(name: str) -> str | None:
    return name.removeprefix("fastdraft_dag.") if name.startswith("fastdraft_dag.") else None


def package(module: str) -> str:
    return module.split(".")[0]


def test_every_package_has_a_layer() -> None:
    assert {package(m) for m in modules()} - {"__init__"} == set(LAYERS)


def test_imports_only_go_down_and_stages_never_import_each_other() -> None:
    bad = []
    for mod, tree in modules().items():
        src = package(mod)
        for name, _ in imports(tree):
            dst = own(name)
            if dst is None or package(dst) == src or src == "__init__":
                continue
            if src in STAGES and package(dst) in STAGES:
                bad.append(f"{mod} -> {dst} (stage imports stage)")
            elif LAYERS[package(dst)] >= LAYERS[src]:
                bad.append(
                    f"{mod} -> {dst} (layer {LAYERS[src]} imports layer {LAYERS[package(dst)]})"
                )
    assert not bad, "\n".join(bad)


def test_only_the_dagster_layer_imports_dagster() -> None:
    bad = []
    for mod, tree in modules().items():
        for name, _ in imports(tree):
            root = name.split(".")[0]
            if root == "dagster_pipes" and mod != "training.run":
                bad.append(f"{mod} imports dagster_pipes (only the trainer's entry point may)")
            if (
                root.startswith("dagster")
                and root != "dagster_pipes"
                and package(mod) not in DAGSTER_LAYER
            ):
                bad.append(f"{mod} imports {name}")
            if name.startswith("dagster._") and mod != "assets.dagster_internals":
                bad.append(f"{mod} imports the private {name} (use assets/dagster_internals.py)")
    assert not bad, "\n".join(bad)


def test_no_function_local_imports_of_own_modules() -> None:
    bad = []
    for mod, tree in modules().items():
        for name, at_top in imports(tree):
            dst = own(name)
            if dst is None or at_top:
                continue
            if any(
                package(mod) == src and (dst == allowed or dst.startswith(allowed + "."))
                for src, allowed in LAZY_ALLOWED
            ):
                continue
            bad.append(f"{mod} imports {dst} inside a function")
    assert not bad, "\n".join(bad)


def test_no_import_cycles() -> None:
    mods = modules()

    def target(name: str) -> str | None:
        dst = own(name)
        if dst is None:
            return None
        return dst if dst in mods else dst.rsplit(".", 1)[0] if "." in dst else None

    graph = {
        m: {d for n, _ in imports(t) if (d := target(n)) and d in mods and d != m}
        for m, t in mods.items()
    }
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(m: str, path: list[str]) -> bool:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycle.extend([*path, m, d])
                return True
            if d not in state and visit(d, [*path, m]):
                return True
        state[m] = 2
        return False

    for m in sorted(graph):
        if m not in state and visit(m, []):
            break
    assert not cycle, " -> ".join(cycle)


def test_the_rules_catch_a_violation(tmp_path: Path) -> None:
    """The checks above are not vacuous: a stage importing a stage is found."""
    tree = ast.parse("from fastdraft_dag.evaluation.metrics import tau\nimport dagster\n")
    found = imports(tree)
    assert ("fastdraft_dag.evaluation.metrics.tau", True) in found and ("dagster", True) in found
    lazy = ast.parse("def f():\n    from fastdraft_dag.data import corpus\n")
    assert imports(lazy) == [("fastdraft_dag.data.corpus", False)]


REPO = PKG.parent
# Where a reader is pointed at a test file: the package (docstrings, comments, recipes), the docs.
TEST_PATH = re.compile(r"\btests/[\w/]+\.py\b")


def mentioned_test_paths(text: str) -> set[str]:
    return set(TEST_PATH.findall(text))


def test_every_test_file_the_docs_and_code_name_exists() -> None:
    """A docstring named tests/test_cli_help.py long after it became tests/test_cli.py."""
    sources = [*PKG.rglob("*.py"), *PKG.rglob("*.yaml"), *(REPO / "docs").rglob("*.md")]
    sources += [REPO / "README.md", REPO / "Makefile"]
    missing = sorted(
        f"{src.relative_to(REPO)}: {name}"
        for src in sources
        for name in mentioned_test_paths(src.read_text())
        if not (REPO / name).is_file()
    )
    assert missing == []


def test_test_paths_are_found_in_prose() -> None:
    text = "checks (tests/test_cli.py checks); `tests/assets/test_ui.py`, tests/x.pyc no"
    assert mentioned_test_paths(text) == {"tests/test_cli.py", "tests/assets/test_ui.py"}


# Past seven positional parameters a call site stops saying which argument is which: the rest
# go after `*` (keyword-only) or into a frozen job dataclass declared once.
MAX_POSITIONAL = 7
# `# fmt: skip` per file (path relative to the package). Empty: ruff's layout is the layout. A
# file may only be added with a comment saying why a table-like literal reads better by hand.
FMT_SKIP_ALLOWED: dict[str, int] = {}


def positional_parameters(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """Parameters a caller may pass by position, without a method's `self`/`cls`."""
    names = [a.arg for a in (*fn.args.posonlyargs, *fn.args.args)]
    return names[1:] if names[:1] in (["self"], ["cls"]) else names


def too_many_positionals(tree: ast.Module, where: str) -> list[str]:
    return [
        f"{where}:{node.lineno} {node.name}() takes {len(names)} positional parameters "
        f"({', '.join(names)}); put the rest after `*` or into a job dataclass"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and len(names := positional_parameters(node)) > MAX_POSITIONAL
    ]


def test_no_function_takes_more_than_seven_positional_parameters() -> None:
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        rel = str(path.relative_to(PKG.parent))
        bad += too_many_positionals(ast.parse(path.read_text(), rel), rel)
    assert not bad, "\n".join(bad)


def test_the_positional_rule_catches_a_violation() -> None:
    eight = "def f(a, b, c, d, e, f, g, h): ...\n"
    kw_only = "def f(a, b, *, c, d, e, f, g, h): ...\n"
    method = "class C:\n    def m(self, a, b, c, d, e, f, g): ...\n"
    assert too_many_positionals(ast.parse(eight), "x.py") == [
        "x.py:1 f() takes 8 positional parameters (a, b, c, d, e, f, g, h); put the rest "
        "after `*` or into a job dataclass"
    ]
    assert too_many_positionals(ast.parse(kw_only), "x.py") == []
    assert too_many_positionals(ast.parse(method), "x.py") == []


def test_no_fmt_skip_outside_the_allow_list() -> None:
    found: dict[str, int] = {}
    for path in sorted(PKG.rglob("*.py")):
        n = sum("# fmt: skip" in line for line in path.read_text().splitlines())
        if n:
            found[str(path.relative_to(PKG))] = n
    extra = {f: n for f, n in found.items() if n > FMT_SKIP_ALLOWED.get(f, 0)}
    assert not extra, f"`# fmt: skip` outside the allow-list (let ruff format it): {extra}"


# Settings records built from mappings (the recipe loader, specs read from JSON) and written by
# keyword in the presets' tests: their fields are named wherever they are made.
POSITIONAL_RECORDS = {
    "Profile", "Settings", "FilterConfig", "KDConfig", "AlignConfig", "Eagle3Config",
    "PromptSource", "BenchConfig", "SourceSpec", "EmbeddedModel", "StageConfig",
    "PretrainConfig", "Stage", "TrainSpec",
}  # fmt: skip


def wide_positional_dataclasses(tree: ast.Module, where: str) -> list[str]:
    """Dataclasses whose constructor takes more than seven fields by position."""
    found = []
    for node in ast.walk(tree):
        decorators = [ast.unparse(d) for d in getattr(node, "decorator_list", ())]
        dataclass = next((d for d in decorators if "dataclass" in d), None)
        if not isinstance(node, ast.ClassDef) or dataclass is None or "kw_only=True" in dataclass:
            continue
        fields = []
        for s in node.body:  # up to a `_: KW_ONLY` marker, after which fields are keyword-only
            if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name):
                if ast.unparse(s.annotation).endswith("KW_ONLY"):
                    break
                if "ClassVar" not in ast.unparse(s.annotation):
                    fields.append(s.target.id)
        if len(fields) > MAX_POSITIONAL and node.name not in POSITIONAL_RECORDS:
            found.append(f"{where}:{node.lineno} {node.name} ({len(fields)} fields): kw_only=True")
    return found


def test_job_dataclasses_take_their_fields_by_keyword() -> None:
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        rel = str(path.relative_to(PKG.parent))
        bad += wide_positional_dataclasses(ast.parse(path.read_text()), rel)
    assert not bad, "\n".join(bad)
    wide = "@dataclass(frozen=True)\nclass J:\n" + "".join(f"    f{i}: int\n" for i in range(8))
    assert wide_positional_dataclasses(ast.parse(wide), "x.py") == [
        "x.py:2 J (8 fields): kw_only=True"
    ]
    keyed = wide.replace("frozen=True", "frozen=True, kw_only=True")
    marked = wide.replace("    f2: int\n", "    _: KW_ONLY\n    f2: int\n")
    assert wide_positional_dataclasses(ast.parse(keyed), "x.py") == []
    assert wide_positional_dataclasses(ast.parse(marked), "x.py") == []
