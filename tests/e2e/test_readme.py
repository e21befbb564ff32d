"""The README's "Try it" examples, pasted into a shell against a live suite, print what it says."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.test_cli import ROOT, run_up

pytestmark = pytest.mark.e2e

VOLATILE = re.compile(r"(^id$|_id$|_at$)")


def try_it_blocks() -> list[tuple[str, str]]:
    """(language, text) of each fenced block in the README's "Try it" section."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Try it", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


def same_shape(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Differences between two JSON values, ignoring ids and timestamps."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        problems = (
            [f"{path}: keys {sorted(expected)} != {sorted(actual)}"]
            if expected.keys() != actual.keys()
            else []
        )
        for key in expected.keys() & actual.keys():
            if VOLATILE.search(key) and expected[key] is not None and actual[key] is not None:
                continue
            problems += same_shape(expected[key], actual[key], f"{path}.{key}")
        return problems
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{path}: {len(expected)} items != {len(actual)}"]
        return [p for e, a in zip(expected, actual, strict=True) for p in same_shape(e, a, path)]
    return [] if expected == actual else [f"{path}: {expected!r} != {actual!r}"]


def shell(command: str, ports: dict[str, int]) -> str:
    for name, default in (
        ("orchestrator", 8000),
        ("email", 8001),
        ("warehouse", 8002),
        ("rewards", 8003),
    ):
        command = command.replace(f"127.0.0.1:{default}", f"127.0.0.1:{ports[name]}")
    result = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_readme_curl_example_against_a_live_suite(tmp_path: Path) -> None:
    """The README's checkout curl gives a completed checkout shaped like the one shown, and its effects."""
    blocks = try_it_blocks()
    (_, checkout_curl), (_, shown), (_, effects) = blocks[0], blocks[1], blocks[2]
    assert "curl" in checkout_curl

    with run_up(tmp_path) as suite:
        suite.wait_ready()
        first = json.loads(shell(checkout_curl, suite.ports))
        again = json.loads(shell(checkout_curl, suite.ports))
        effect_lines = [line for line in effects.strip().splitlines() if line.startswith("curl")]
        exports = "\n".join(line for line in effects.splitlines() if line.startswith("export "))
        outputs = [
            shell(exports + "\n" + line.split("  #", 1)[0], suite.ports) for line in effect_lines
        ]

    assert same_shape(json.loads(shown), first) == []
    assert first["status"] == "completed"
    assert [s["status"] for s in first["steps"]] == ["succeeded"] * 3
    assert again == first, "the README promises a replay answers the same"
    for line, output in zip(effect_lines, outputs, strict=True):
        comment = line.split("#", 1)[1].strip()
        if comment.startswith("{"):
            assert json.loads(output) == json.loads(comment), line
    emails = json.loads(outputs[2])["items"]
    assert [(e["template"], e["status"]) for e in emails] == [("order_confirmation", "logged")]
