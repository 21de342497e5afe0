"""Every folder of Python or YAML files is listed in pyproject's packages; configs ship."""

from __future__ import annotations

import sys
from importlib.resources import files
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_listed():
    config = _config()
    listed = set(config["packages"])
    mapping = {"brainfm": "brainfm", **config["package-dir"]}
    missing = []
    for package, folder in mapping.items():
        base = ROOT / folder
        for directory in [base, *[p for p in base.rglob("*") if p.is_dir()]]:
            if "__pycache__" in directory.parts or "sample_data" in directory.parts:
                continue
            if any(directory.glob("*.py")) or any(directory.glob("*.yaml")):
                rel = directory.relative_to(base).parts
                name = ".".join((package, *rel))
                if name not in listed:
                    missing.append(name)
    assert not missing, f"add these packages to [tool.setuptools] packages: {missing}"


def test_listed_packages_exist():
    config = _config()
    mapping = {"brainfm": "brainfm", **config["package-dir"]}
    for name in config["packages"]:
        root = max((p for p in mapping if name == p or name.startswith(p + ".")), key=len)
        folder = ROOT / mapping[root] / Path(*name[len(root) :].strip(".").split(".")) if name != root else ROOT / mapping[root]
        assert folder.is_dir(), f"{name} is listed but {folder} does not exist"


def test_recipes_ship_as_package_data():
    names = sorted(p.name for p in (files("brainfm.configs") / "preprocessing").iterdir() if p.name.endswith(".yaml"))
    assert {"default.yaml", "brainomni.yaml", "meg_gpt.yaml", "barista.yaml"} <= set(names)


def test_sample_data_ships_with_its_licence():
    sample = files("brainfm") / "sample_data" / "eegmmidb"
    names = {p.name for p in sample.iterdir()}
    assert {"S001R03.edf", "S001R04.edf", "LICENSE.txt", "SHA256SUMS"} <= names
