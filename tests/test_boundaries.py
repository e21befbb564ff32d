"""Package boundaries: the kit knows no service, and services never import each other.

Services talk over HTTP only. ``checkout_suite`` (the suite's own package: the ``checkout-suite``
command) is the one package that imports the services; neither they nor the kit import it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KIT = "servicekit"
SUITE = "checkout_suite"
SERVICES = ("orchestrator", "warehouse_service", "rewards_service", "email_service")
DYNAMIC_IMPORTERS = {"import_module", "__import__"}


def called_name(node: ast.Call) -> str | None:
    """The name a call is made by: ``import_module`` for ``importlib.import_module(...)``."""
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def imported_modules(source: str, module: str, *, is_package: bool) -> set[str]:
    """Absolute names of the modules ``source`` (the text of ``module``) imports.

    Relative imports are resolved against ``module``; constant arguments of
    ``importlib.import_module`` and ``__import__`` count as imports too.
    """
    package_parts = module.split(".") if is_package else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                prefix = ".".join([*base, node.module] if node.module else base)
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call) and node.args:
            first = node.args[0]
            if (
                called_name(node) in DYNAMIC_IMPORTERS
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                found.add(first.value)
    return found


def top_level(module: str) -> str:
    return module.split(".", 1)[0]


def forbidden_packages(package: str) -> set[str]:
    """The top-level packages ``package`` may not import."""
    if package == SUITE:
        return {"tests"}
    # The kit and the services: no service but their own, never the suite nor the tests.
    return {*SERVICES, SUITE, "tests"} - {package}


def forbidden_imports(package: str) -> list[str]:
    """``path: module`` for each import in ``package`` that crosses a boundary."""
    forbidden = forbidden_packages(package)
    violations: list[str] = []
    for path in sorted((ROOT / package).rglob("*.py")):
        relative = path.relative_to(ROOT)
        module = ".".join(relative.with_suffix("").parts)
        is_package = path.name == "__init__.py"
        if is_package:
            module = module.removesuffix(".__init__")
        imports = imported_modules(path.read_text(encoding="utf-8"), module, is_package=is_package)
        violations.extend(
            f"{relative}: imports {name}"
            for name in sorted(imports)
            if top_level(name) in forbidden
        )
    return violations


def _require(package: str) -> None:
    assert (ROOT / package).is_dir(), f"{package}/ is missing"


def test_servicekit_imports_no_service() -> None:
    """servicekit imports none of the services (nor the tests)."""
    _require(KIT)
    assert forbidden_imports(KIT) == []


@pytest.mark.parametrize("package", SERVICES)
def test_service_imports_no_other_service(package: str) -> None:
    """A service imports no other service (the orchestrator included), only servicekit."""
    _require(package)
    assert forbidden_imports(package) == []


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("import warehouse_service.main", "orchestrator.api", {"warehouse_service.main"}),
        ("import warehouse_service as w", "orchestrator.api", {"warehouse_service"}),
        (
            "from rewards_service import store",
            "orchestrator.api",
            {"rewards_service", "rewards_service.store"},
        ),
        (
            "from email_service.schemas import X",
            "orchestrator.api",
            {"email_service.schemas", "email_service.schemas.X"},
        ),
        (
            "from . import store",
            "warehouse_service.api",
            {"warehouse_service", "warehouse_service.store"},
        ),
        (
            "from ..kit import x",
            "orchestrator.saga.runner",
            {"orchestrator.kit", "orchestrator.kit.x"},
        ),
        (
            "import importlib\nimportlib.import_module('email_service.main')",
            "orchestrator.api",
            {"importlib", "email_service.main"},
        ),
        ("__import__('rewards_service')", "orchestrator.api", {"rewards_service"}),
        (
            "if TYPE_CHECKING:\n    from warehouse_service import models",
            "orchestrator.api",
            {"warehouse_service", "warehouse_service.models"},
        ),
        ("APP = 'warehouse_service.main:create_app'", "checkout_suite.services", set()),
        ("def f():\n    import email_service\n", "servicekit.db", {"email_service"}),
    ],
)
def test_import_scanner_sees_every_form_of_import(
    source: str, module: str, expected: set[str]
) -> None:
    """The scanner catches plain, from, relative, lazy, TYPE_CHECKING and dynamic imports, not strings."""
    assert imported_modules(source, module, is_package=False) == expected


def test_boundaries_bar_every_service_and_the_kit_from_the_suite() -> None:
    """The kit and each service may import neither the suite nor another service."""
    assert forbidden_packages(KIT) == {*SERVICES, SUITE, "tests"}
    for package in SERVICES:
        assert forbidden_packages(package) == {*SERVICES, SUITE, "tests"} - {package}


def test_suite_imports_no_tests() -> None:
    """checkout_suite may import every service (it is the suite), but not the tests."""
    _require(SUITE)
    assert forbidden_packages(SUITE) == {"tests"}
    assert forbidden_imports(SUITE) == []


def test_suite_imports_the_services_plainly() -> None:
    """checkout_suite names the services' code with plain imports, never through importlib."""
    _require(SUITE)
    reach_ins = [
        f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}"
        for path in sorted((ROOT / SUITE).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and called_name(node) in DYNAMIC_IMPORTERS
    ]
    assert reach_ins == []
