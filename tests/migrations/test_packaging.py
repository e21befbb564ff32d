"""The migrations ship inside the packages: a build (what ``pip install .`` copies) holds them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.migrations.helpers import SERVICES

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "servicekit",
    "checkout_suite",
    "orchestrator",
    "warehouse_service",
    "rewards_service",
    "email_service",
)


def test_a_build_holds_every_migration_history(tmp_path: Path) -> None:
    """env.py, the revision template and every revision of each service are in the built package."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    built = tmp_path / "build"
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import setuptools; setuptools.setup()",
            "-q",
            "build_py",
            "-d",
            str(built),
        ],
        cwd=source,
        check=True,
        capture_output=True,
    )
    for service in SERVICES.values():
        shipped = service.history.directory
        package_dir = built / shipped.relative_to(ROOT)
        expected = {"env.py", "script.py.mako", "__init__.py"} | {
            f"versions/{p.name}" for p in (shipped / "versions").glob("*.py")
        }
        found = {str(p.relative_to(package_dir)) for p in package_dir.rglob("*") if p.is_file()}
        assert expected <= found, expected - found
        assert any(p.startswith("versions/0002_") for p in found)
