"""What `pip install hf-specdecpp` (not editable) ships: every package folder, the shipped heads' files."""

from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]


def test_every_source_folder_is_a_package_that_setuptools_finds():
    found = set(find_packages(str(ROOT), include=["hf_specdecpp", "hf_specdecpp.*"]))
    folders = {p.parent for p in (ROOT / "hf_specdecpp").rglob("*.py")
               if "__pycache__" not in p.parts and "hub_repo" not in p.parts}  # hub_repo: package data
    missing = sorted(str(f.relative_to(ROOT)) for f in folders
                     if ".".join(f.relative_to(ROOT).parts) not in found)
    assert not missing, f"folders without __init__.py are left out of a wheel: {missing}"


RUNTIME_HEAD_FILES = {"config.json", "model.safetensors", "policy.json", "training_info.json", "traces.safetensors",
                      "README.md"}
"""What a shipped head needs at run time (AcceptanceHead.from_pretrained, recalibrate="auto") and its model card;
the calibration plot (`calibration.png`) is documentation and stays out of the wheel."""


def _setup_cfg_line(prefix: str) -> str:
    return next(line for line in (ROOT / "setup.cfg").read_text().splitlines() if line.startswith(prefix))


def test_setup_cfg_ships_the_runtime_files_of_the_shipped_heads_and_no_plots():
    patterns = _setup_cfg_line("hf_specdecpp.head.shipped = */config.json")
    shipped = ROOT / "hf_specdecpp" / "head" / "shipped"
    names = {p.name for folder in shipped.iterdir() if folder.is_dir() and folder.name != "__pycache__"
             for p in folder.iterdir()}
    assert RUNTIME_HEAD_FILES <= names and names - RUNTIME_HEAD_FILES <= {"calibration.png"}, names
    assert all(f"*/{name}" in patterns for name in RUNTIME_HEAD_FILES), patterns
    assert ".png" not in patterns
    assert "*/calibration.png" in _setup_cfg_line("hf_specdecpp.head.shipped = */calibration.png")


def test_requirements_declare_lower_bounds_only():
    """Installing hf-specdecpp must never replace a user's newer transformers or torch (release day): the core
    requirements carry no upper bound, and transformers' lower bound is the oldest release CI tests."""
    from configparser import ConfigParser

    from packaging.requirements import Requirement

    config = ConfigParser()
    config.read(ROOT / "setup.cfg")
    requirements = [Requirement(line) for line in config["options"]["install_requires"].split("\n") if line.strip()]
    by_name = {r.name: r for r in requirements}
    for requirement in requirements:
        assert not any(spec.operator in ("<", "<=", "==", "~=", "===") for spec in requirement.specifier), requirement
    assert "5.15" in str(by_name["transformers"].specifier) and "torch" in by_name
    import re

    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"--upgrade transformers|-U transformers", ci), "CI must test the newest transformers release"
    assert "5.15.1" in ci  # the oldest supported release keeps its leg


def test_setup_cfg_ships_the_hub_method_template():
    patterns = _setup_cfg_line("hf_specdecpp.integration =")
    template = ROOT / "hf_specdecpp" / "integration" / "hub_repo"
    files = {str(p.relative_to(template.parent)) for p in template.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts}
    assert files and all(f in patterns for f in files), (files, patterns)
