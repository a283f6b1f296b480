"""The floors of docs/development.md: each package imports only itself and the floors below it.

dataloader/ reads frames and never imports extraction/ (which writes them, through the layout in
dataloader/layout.py); network/ knows no data; utils/ is the ground floor. Imports inside
functions count too: a lazy import is still a dependency.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {"spatial_cnn", "motion_cnn", "clip_cnn", "fusion"}
FIRST_PARTY = {"utils", "dataloader", "network", "extraction", "engine", "tools", "bench", "tests"}
ALLOWED = {
    "utils": {"utils"},
    "dataloader": {"dataloader", "utils"},
    "network": {"network", "utils"},
    "extraction": {"extraction", "dataloader", "utils"},
    "engine": {"engine", "extraction", "dataloader", "network", "utils"},
}


def first_party_imports(source: str, package: str) -> set[str]:
    """Top-level first-party names ``source`` imports anywhere (relative imports: ``package``)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add(package if node.level else node.module.split(".")[0])
    return found & (FIRST_PARTY | SCRIPTS)


def test_the_scan_sees_lazy_relative_and_plain_imports():
    source = "import os\nimport engine.run\ndef f():\n    from extraction.decode import x\n"
    source += "from . import samples\n"
    assert first_party_imports(source, "dataloader") == {"engine", "extraction", "dataloader"}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_floors_below_it(package):
    files = sorted((ROOT / package).glob("*.py"))
    assert files, f"{package}/ has no modules"
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files
        for name in first_party_imports(path.read_text(), package) - ALLOWED[package]
    }
    assert not wrong, sorted(wrong)
