"""The package layers of docs/architecture.md: every vidattn import (module level or inside a function) goes
to a strictly lower layer or stays inside its own package, so there is no import cycle; `import vidattn.data`
and `import vidattn.cli` import no model."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import vidattn

ROOT = Path(vidattn.__file__).parent

# docs/architecture.md, "Layers": lowest first; a unit is a top-level module or a subpackage of vidattn
LAYERS = [
    {"runtime", "runs", "config"},
    {"data"},
    {"models"},
    {"inference"},
    {"engine", "analysis", "predict", "export", "online"},
    {"experiments", "stream"},
    {"benchmark"},
    {"quickstart"},
    {"cli"},
]
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every vidattn module `path` imports, at any depth (TYPE_CHECKING blocks excluded)."""
    module = _module(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package[: len(package) - child.level + 1] + ([base] if base else []))
                found.add(base)
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m.startswith("vidattn.")}


def _unit(module: str) -> str:
    return module.split(".")[1]


def test_every_import_goes_down_a_layer_or_stays_in_its_package():
    wrong = []
    for path in ROOT.rglob("*.py"):
        module = _module(path)
        if module == "vidattn":
            continue  # the package's lazy create_model/list_models (PEP 562), see vidattn/__init__.py
        here = _unit(module)
        assert here in LAYER, f"{module}: its package is in no layer of docs/architecture.md"
        for target in _imports(path):
            there = _unit(target)
            if there != here and not LAYER[there] < LAYER[here]:
                wrong.append(f"{module} imports {target} (layer {LAYER[there]} >= {LAYER[here]})")
    assert not wrong, "\n".join(sorted(wrong))


def test_low_layers_import_no_model():
    code = ("import sys, vidattn.data, vidattn.cli, vidattn.runtime, vidattn.runs, vidattn.config; "
            "print(sorted(m for m in sys.modules if m.startswith('vidattn.models')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.stdout.strip() == "[]"
