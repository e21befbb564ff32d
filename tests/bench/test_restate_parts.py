"""The Restate target's pure parts: finding and installing the binary, the options, the report.

No network and no real npm: a stand-in ``npm`` script plays the install where one is needed.
"""

from __future__ import annotations

import asyncio
import json
import platform
import stat
from pathlib import Path
from typing import Any

import pytest

from bench import restate
from bench.__main__ import parse
from bench.load import parse_args
from bench.report import target_checks
from bench.runner import charge_parts_to_target
from bench.standins import POSTS_PATH, StandIns

HERE = restate.npm_platform(platform.system(), platform.machine())
needs_a_platform_binary = pytest.mark.skipif(
    HERE is None, reason=f"no restate-server binary for {platform.system()} {platform.machine()}"
)


def _executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _fake_binary(install_dir: Path, version: str = restate.VERSION) -> Path:
    assert HERE is not None
    return _executable(
        restate.binary_path(install_dir, HERE), f'#!/bin/sh\necho "restate-server {version}"\n'
    )


def _fake_npm(tmp_path: Path, body: str) -> str:
    """An ``npm`` that runs ``body`` with ``$prefix`` set to its ``--prefix`` argument."""
    script = '#!/bin/sh\nwhile [ "$1" != "--prefix" ]; do shift; done\nprefix="$2"\n' + body
    return str(_executable(tmp_path / "bin" / "npm", script))


def test_npm_platform_names_the_package_holding_the_binary() -> None:
    assert restate.npm_platform("Linux", "x86_64") == "linux-x64"
    assert restate.npm_platform("Linux", "aarch64") == "linux-arm64"
    assert restate.npm_platform("Darwin", "arm64") == "darwin-arm64"
    assert restate.npm_platform("Windows", "AMD64") is None
    assert restate.npm_platform("Linux", "riscv64") is None


def test_the_binary_is_where_npm_puts_the_platform_package(tmp_path: Path) -> None:
    path = restate.binary_path(tmp_path, "linux-x64")
    assert path == (
        tmp_path / "node_modules/@restatedev/restate-server-linux-x64/bin/restate-server"
    )
    assert restate.find_binary(tmp_path, "linux-x64") is None
    path.parent.mkdir(parents=True)
    path.write_text("")
    assert restate.find_binary(tmp_path, "linux-x64") is None, "not executable"
    path.chmod(0o755)
    assert restate.find_binary(tmp_path, "linux-x64") == path


def test_the_install_lives_in_the_user_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere/cache")
    assert restate.default_install_dir() == Path(
        f"/somewhere/cache/checkout-suite/restate-{restate.VERSION}"
    )
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert restate.default_install_dir() == (
        Path.home() / ".cache" / "checkout-suite" / f"restate-{restate.VERSION}"
    )


@needs_a_platform_binary
def test_an_installed_binary_is_reused_without_npm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = _fake_binary(tmp_path / "install")
    monkeypatch.setattr(restate.shutil, "which", lambda _name: None)
    assert restate.install(tmp_path / "install") == binary


@needs_a_platform_binary
def test_a_binary_of_another_version_is_refused(tmp_path: Path) -> None:
    _fake_binary(tmp_path, version="1.6.0")
    with pytest.raises(restate.RestateUnavailable, match=r"says 'restate-server 1\.6\.0'"):
        restate.install(tmp_path)


@needs_a_platform_binary
def test_npm_installs_into_a_staging_folder_then_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = f"$prefix/node_modules/@restatedev/restate-server-{HERE}/bin"
    npm = _fake_npm(
        tmp_path,
        f'mkdir -p "{bin_dir}"\n'
        f'printf \'#!/bin/sh\\necho "restate-server {restate.VERSION}"\\n\' > "{bin_dir}/restate-server"\n'
        f'chmod +x "{bin_dir}/restate-server"\n',
    )
    monkeypatch.setattr(restate.shutil, "which", lambda _name: npm)
    install_dir = tmp_path / "cache" / "restate"
    binary = restate.install(install_dir)
    assert binary == restate.binary_path(install_dir, HERE)
    assert sorted(p.name for p in install_dir.parent.iterdir()) == ["restate"], "staging removed"


@needs_a_platform_binary
def test_a_failed_npm_install_is_a_reason_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    npm = _fake_npm(
        tmp_path, 'printf "npm error code E404\\nnpm error 404 Not Found\\n" >&2\nexit 1\n'
    )
    monkeypatch.setattr(restate.shutil, "which", lambda _name: npm)
    with pytest.raises(restate.RestateUnavailable, match=r"exited with 1: E404: 404 Not Found$"):
        restate.install(tmp_path / "cache" / "restate")
    assert list((tmp_path / "cache").iterdir()) == []


@needs_a_platform_binary
def test_an_install_without_the_platform_binary_is_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """npm skips an optional dependency it cannot install; the binary is then missing."""
    npm = _fake_npm(tmp_path, 'mkdir -p "$prefix/node_modules"\n')
    monkeypatch.setattr(restate.shutil, "which", lambda _name: npm)
    with pytest.raises(restate.RestateUnavailable, match=r"without its .* binary"):
        restate.install(tmp_path / "restate")


def test_an_npm_error_is_said_in_one_line() -> None:
    unreachable = (
        "npm error code ECONNREFUSED\n"
        "npm error syscall connect\n"
        "npm error errno ECONNREFUSED\n"
        "npm error FetchError: request to http://127.0.0.1:9/x failed, reason: connect ECONNREFUSED\n"
        "npm error     at ClientRequest.<anonymous> (index.js:130:14)\n"
        "npm error\n"
        "npm error A complete log of this run can be found in: /tmp/x.log\n"
    )
    assert restate.npm_error_summary(unreachable) == (
        "ECONNREFUSED: FetchError: request to http://127.0.0.1:9/x failed, "
        "reason: connect ECONNREFUSED"
    )
    no_such_version = (
        "npm error code ETARGET\n"
        "npm error notarget No matching version found for @restatedev/restate-server@9.9.9.\n"
    )
    assert restate.npm_error_summary(no_such_version) == (
        "ETARGET: notarget No matching version found for @restatedev/restate-server@9.9.9."
    )
    assert restate.npm_error_summary("") == "no output"


def test_without_npm_the_target_is_skipped_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(restate.shutil, "which", lambda _name: None)
    monkeypatch.setattr(restate, "npm_platform", lambda _system, _machine: "linux-x64")
    reason = restate.Restate(tmp_path / "restate", tmp_path).prepare()
    assert reason == f"npm is not installed (needed to install {restate.PACKAGE}@{restate.VERSION})"


def test_the_options_select_restate() -> None:
    assert parse([]).restate
    assert parse([]).restate_http == "2"
    assert not parse(["--no-restate"]).restate
    assert not parse(["--quick"]).restate, "the smoke run stays as quick as it was"
    assert parse(["--quick", "--targets", "restate"]).restate
    chosen = parse(["--restate-dir", "/tmp/r", "--restate-http", "1.1"])
    assert (chosen.restate_dir, chosen.restate_http) == (Path("/tmp/r"), "1.1")


def test_the_load_posts_to_checkouts_and_wants_201_unless_told() -> None:
    default = parse_args(["--url", "http://127.0.0.1:1", "--n", "1"])
    assert (default.path, default.ok_status) == ("/checkouts", 201)
    url = ["--url", "http://127.0.0.1:1", "--n", "1"]
    ingress = parse_args([*url, "--path", "/Checkout/create", "--ok-status", "200"])
    assert (ingress.path, ingress.ok_status) == ("/Checkout/create", 200)


def test_a_target_of_two_processes_is_charged_both() -> None:
    result: dict[str, Any] = {
        "cpu_ms": {"restate-server": 3.0, "SDK service": 2.5, "warehouse": 0.1, "email": 0.2}
    }
    charge_parts_to_target(result, ["restate-server", "SDK service"])
    assert result["cpu_ms"] == {"target": 5.5, "warehouse": 0.1, "email": 0.2}
    assert result["target_cpu_ms"] == {"restate-server": 3.0, "SDK service": 2.5}


def test_the_stand_ins_count_the_posts_they_answer() -> None:
    app = StandIns()

    async def call(method: str, path: str) -> bytes:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app({"type": "http", "method": method, "path": path, "headers": []}, receive, send)
        return bytes(sent[-1]["body"])

    async def scenario() -> list[int]:
        seen = [json.loads(await call("GET", POSTS_PATH))["posts"]]
        await call("POST", "/reservations")
        await call("POST", "/emails")
        await call("GET", "/readyz")
        seen.append(json.loads(await call("GET", POSTS_PATH))["posts"])
        return seen

    assert asyncio.run(scenario()) == [0, 2]


def _row(target: str, kind: str, concurrency: int, throughput: float) -> dict[str, Any]:
    return {
        "target": target,
        "kind": kind,
        "group": "stand-ins",
        "database": "SQLite" if kind == "durable" else "-",
        "ok": 100,
        "concurrency": concurrency,
        "cpu_ms": {"target": 2.0},
        "throughput": throughput,
        "p50_ms": 5.0,
    }


def test_each_orchestrator_row_is_judged_against_restate_of_the_same_run() -> None:
    results = [
        _row("baseline-aiohttp", "baseline", 1, 600),
        _row("baseline-aiohttp", "baseline", 32, 1500),
        _row("restate", "restate", 1, 80),
        _row("restate", "restate", 32, 200),
        _row("orchestrator-sqlite", "durable", 1, 300),
        _row("orchestrator-sqlite", "durable", 32, 650),
        _row("orchestrator-postgres", "durable", 32, 500),
    ]
    checks = {
        what: (measured, goal, verdict) for what, measured, goal, verdict in target_checks(results)
    }
    assert checks["orchestrator-sqlite throughput at C=32 vs restate"] == (
        "3.25× (650 against 200 checkouts/s)",
        "≥ 3×",
        "met",
    )
    assert checks["orchestrator-postgres throughput at C=32 vs restate"][2] == "NOT met"
    assert not any(what.startswith("restate") for what in checks), "restate is not judged"
    assert not any("C=1 vs restate" in what for what in checks)


def test_without_a_restate_row_there_is_no_restate_check() -> None:
    results = [
        _row("baseline-aiohttp", "baseline", 32, 1500),
        _row("orchestrator-sqlite", "durable", 32, 650),
    ]
    assert not any("vs restate" in what for what, *_ in target_checks(results))
