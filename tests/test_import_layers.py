"""The import graph follows DESIGN.md section 1: lower layers never import higher ones."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "brainfm": ROOT / "brainfm",
    "brainfm.preprocessing": ROOT / "preprocessing",
    "brainfm.pretrain": ROOT / "pretrain",
    "brainfm.downstream": ROOT / "downstream",
}
# Layer of each top module, lowest first. A module may import only equal or lower layers.
LAYERS = {
    "brainfm.errors": 0, "brainfm._check": 0, "brainfm._logging": 0, "brainfm._version": 0,
    "brainfm.data": 1,
    "brainfm.store": 2,
    "brainfm.loading": 3,
    "brainfm.nn": 4,
    "brainfm.tokenizers": 5, "brainfm.models": 5,
    "brainfm.checkpoint": 6,
    "brainfm.preprocessing": 7, "brainfm.pretrain": 7, "brainfm.downstream": 7,
    "brainfm.cli": 8,
}
STAGES = ("brainfm.preprocessing", "brainfm.pretrain", "brainfm.downstream")
NO_TORCH = ("brainfm.errors", "brainfm._check", "brainfm._logging", "brainfm.data", "brainfm.store", "brainfm.preprocessing")


def _modules() -> list[tuple[str, Path]]:
    found = []
    for package, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if package == "brainfm" and parts and parts[0] in ("sample_data",):
                continue
            name = ".".join((package, *parts)).removesuffix(".__init__")
            found.append((name, path))
    return found


def _layer_of(module: str) -> tuple[str, int] | None:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return prefix, LAYERS[prefix]
    return None


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_every_module_has_a_layer():
    unplaced = [name for name, _ in _modules() if name != "brainfm" and _layer_of(name) is None]
    assert not unplaced, f"modules outside the declared layers: {unplaced}"


@pytest.mark.parametrize("name,path", _modules(), ids=lambda v: str(v))
def test_imports_respect_layers(name, path):
    own = _layer_of(name)
    if own is None:
        return
    own_prefix, own_layer = own
    for imported in _imports(path):
        if imported.split(".")[0] in ("preprocessing", "pretrain", "downstream", "configs"):
            pytest.fail(f"{name} imports the bare top-level {imported!r}; use brainfm.{imported}")
        if any(name.startswith(p) for p in NO_TORCH) and imported.split(".")[0] in ("torch", "lightning"):
            pytest.fail(f"{name} imports {imported}: this layer must not import torch")
        target = _layer_of(imported) if imported.startswith("brainfm") else None
        if target is None:
            continue
        prefix, layer = target
        if prefix in STAGES and own_prefix in STAGES and prefix != own_prefix:
            pytest.fail(f"stage {name} imports another stage {imported}")
        assert layer <= own_layer, f"{name} (layer {own_layer}) imports {imported} (layer {layer})"


def test_cli_help_does_not_import_torch_or_heavy_libraries():
    code = (
        "import sys; from brainfm.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'lightning', 'mne', 'zarr') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_preprocessing_never_loads_torch():
    code = (
        "import sys, brainfm.preprocessing.run, brainfm.preprocessing.pipeline, brainfm.store, brainfm.data\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "False"
