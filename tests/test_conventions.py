"""House conventions that CI enforces: no global RNG, documented public API, no prints."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for folder in ("brainfm", "preprocessing", "pretrain", "downstream") for p in sorted((ROOT / folder).rglob("*.py"))]
ALLOWED_RANDOM = {"default_rng", "Generator", "SeedSequence", "PCG64", "BitGenerator"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] != "brainfm":
        parts.insert(0, "brainfm")
    return ".".join(parts).removesuffix(".__init__")


@pytest.mark.parametrize("path", SOURCES + sorted((ROOT / "tests").rglob("*.py")) + sorted((ROOT / "bench").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_global_rng(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
            if node.value.attr == "random" and isinstance(node.value.value, ast.Name) and node.value.value.id in ("np", "numpy"):
                assert node.attr in ALLOWED_RANDOM, f"{path}:{node.lineno} uses the global numpy RNG (np.random.{node.attr}); use np.random.default_rng(seed)"
        if isinstance(node, ast.Attribute) and node.attr == "manual_seed" and isinstance(node.value, ast.Name) and node.value.id == "torch":
            pytest.fail(f"{path}:{node.lineno} seeds torch's global RNG; pass a torch.Generator")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_library_code_does_not_print(path):
    if "cli" in path.parts:
        return
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            pytest.fail(f"{path}:{node.lineno} prints; library code logs through brainfm._logging.logger")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_public_names_are_documented(path):
    tree = ast.parse(path.read_text())
    assert ast.get_docstring(tree), f"{path} has no module docstring"
    module = importlib.import_module(_module_name(path))
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            doc = inspect.getdoc(obj) or ""
            assert doc.strip(), f"{module.__name__}.{name} has no docstring"
            if inspect.isfunction(obj) and obj.__module__ == module.__name__:
                params = [p for p in inspect.signature(obj).parameters if p not in ("self", "cls")]
                if params and len(doc.splitlines()) > 1:
                    assert "Parameters" in doc, f"{module.__name__}.{name} documents no Parameters section"
