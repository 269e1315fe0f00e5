"""Every third-party package the code imports is declared in pyproject.toml, pinned.

A package the code imports but gets only through another pin (numpy through torch, pyarrow
through datasets) moves whenever that pin moves; declared, it cannot. Modules reached only through
an extra (the k8s launcher) are declared in that extra. Import names map to distributions through
`importlib.metadata.packages_distributions()`, so `yaml` is PyYAML and `optimum` is optimum or
optimum-intel (a namespace both fill).
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "fastdraft_dag"

# Imports whose distribution is not installed here, by name.
NOT_INSTALLED = {"dagster_k8s": "dagster-k8s"}
# Modules reached only through an extra: import name -> extra.
EXTRA_ONLY = {"dagster_k8s": "k8s"}
# Provided by the platform, not by pip: the Gaudi container's PyTorch bridge (training/gaudi.py
# probes it and treats any failure as "no Gaudi").
PLATFORM = {"habana_frameworks"}
# Declared though no module imports them, and why (anything else unused is a leftover).
DECLARED_UNIMPORTED = {
    "tokenizers": "transformers' fast tokenizers, pinned to the version transformers was tested with",
    "optimum-intel": "fills the `optimum.intel` namespace the export imports",
    "openvino-tokenizers": "converts the tokenizers to IR during export (optimum-intel loads it)",
    "dagster-webserver": "the UI (`make ui`)",
    "tensorboard": "torch.utils.tensorboard writes the event files through it",
    "accelerate": "transformers refuses to load a GGUF file without it (the embedded targets)",
    "einops": "optimum-intel's model_patcher.py imports it, and the EAGLE-3 export loads that file "
    "as a dynamic module whose every import transformers checks",
}


def _name(requirement: str) -> str:
    """The normalized distribution name of a requirement string (`Foo_Bar[x]==1` -> foo-bar)."""
    return re.sub(r"[-_.]+", "-", re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0]).lower()


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _imports() -> dict[str, set[str]]:
    """Top-level third-party import name -> modules importing it (function-local included)."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                root = name.split(".")[0]
                if root not in sys.stdlib_module_names and root not in (
                    "fastdraft_dag",
                    "__future__",
                ):
                    found.setdefault(root, set()).add(str(path.relative_to(REPO)))
    return found


def _dists(root: str) -> set[str]:
    names = packages_distributions().get(root) or [NOT_INSTALLED.get(root, root)]
    return {_name(d) for d in names}


def test_every_import_is_declared_and_pinned() -> None:
    project = _project()
    main = {_name(r) for r in project["dependencies"]}
    extras = {k: {_name(r) for r in v} for k, v in project["optional-dependencies"].items()}
    bad = []
    for root, modules in sorted(_imports().items()):
        if root in PLATFORM:
            continue
        declared = extras[EXTRA_ONLY[root]] if root in EXTRA_ONLY else main
        where = f"extra {EXTRA_ONLY[root]!r}" if root in EXTRA_ONLY else "dependencies"
        if not _dists(root) & declared:
            bad.append(f"import {root} ({sorted(modules)[0]}): none of {_dists(root)} in {where}")
    assert not bad, "\n".join(bad)
    unpinned = [r for r in project["dependencies"] if "==" not in r]
    assert not unpinned, f"unpinned dependencies: {unpinned}"


def test_no_dependency_is_a_leftover() -> None:
    """A main dependency nothing imports (tabulate and deepspeed were) must say why."""
    imported = {d for root in _imports() for d in _dists(root)}
    main = {_name(r) for r in _project()["dependencies"]}
    leftovers = main - imported - set(DECLARED_UNIMPORTED)
    assert not leftovers, f"declared but never imported: {sorted(leftovers)}"
    assert set(DECLARED_UNIMPORTED) <= main, set(DECLARED_UNIMPORTED) - main


def test_only_the_gaudi_extra_brings_deepspeed() -> None:
    project = _project()
    main = {_name(r) for r in project["dependencies"]}
    assert not {"deepspeed", "tabulate"} & main
    extras = project["optional-dependencies"]
    assert "deepspeed==0.19.8" in extras["gaudi"]
    assert "deepspeed==0.19.8" in (REPO / "requirements/gaudi.txt").read_text().split()


def test_the_eagle3_exports_dynamic_module_finds_every_import() -> None:
    """transformers refuses a dynamic module with a missing import: einops came only through
    deepspeed until deepspeed became the gaudi extra, and a fresh install's EAGLE-3 export failed.
    Every third-party import of that file is a main dependency."""
    import optimum.exporters.openvino.model_patcher as patcher
    from transformers.dynamic_module_utils import get_imports

    third_party = [m for m in get_imports(patcher.__file__) if m not in sys.stdlib_module_names]
    main = {_name(r) for r in _project()["dependencies"]}
    assert all(_dists(m) & main for m in third_party), [
        m for m in third_party if not _dists(m) & main
    ]
