"""Shared fixtures: a private llm user directory per test, the local AI Power site of
either generation, and both transports (httpx2, and curl_cffi where the [browser] extra is
installed).

Nothing here sets ``sys._called_from_test``: that would stop llm from loading this
plugin's entry point and make the CLI re-raise errors instead of printing them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import llm
import pytest
from click.testing import CliRunner, Result
from llm.cli import cli

import llm_chatgptfree
from tests.aipower_site import AIPowerSite

ENVIRONMENT = (
    "CHATGPTFREE_SITE",
    "CHATGPTFREE_COOKIES",
    "CHATGPTFREE_USER_AGENT",
    "CHATGPTFREE_PROXY",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "LLM_RAISE_ERRORS",
)
TRANSPORTS = ["httpx", "curl"] if importlib.util.find_spec("curl_cffi") else ["httpx"]


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: half as many workers again as cores, since most tests wait (on the
    local site, a browser, a child process) more than they compute: on 2 cores, 3
    workers took 104 s where 2 took 123 s, for the same CPU time; 4 took longer."""
    return max(2, (os.cpu_count() or 1) * 3 // 2)


@pytest.fixture(scope="session")
def migrated_logs_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty logs.db that llm has already migrated: migrating a new one takes llm
    about a second, which every test would otherwise pay on its first command."""
    import sqlite_utils
    from llm.migrations import migrate

    path = tmp_path_factory.mktemp("template") / "logs.db"
    migrate(sqlite_utils.Database(path))
    return path


@pytest.fixture(autouse=True)
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, migrated_logs_db: Path) -> Path:
    """Every test gets its own llm directory (keys, logs, caches), no proxy, and httpx2
    unless it asks for the ``transport`` fixture."""
    path = tmp_path / "llm-user"
    path.mkdir()
    shutil.copyfile(migrated_logs_db, path / "logs.db")
    monkeypatch.setenv("LLM_USER_PATH", str(path))
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CHATGPTFREE_IMPERSONATE", "none")
    monkeypatch.setattr(llm_chatgptfree, "RETRY_PAUSE", 0.05)
    return path


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test runs once through httpx2 and once through curl_cffi (if installed)."""
    monkeypatch.setenv("CHATGPTFREE_IMPERSONATE", "none" if request.param == "httpx" else "chrome")
    return request.param


@pytest.fixture
def site(transport: str) -> Iterator[AIPowerSite]:
    """A local 1.x site (release 1.8.96) on 127.0.0.1, through each transport."""
    with AIPowerSite("1.8.96") as running:
        yield running


@pytest.fixture
def site2(transport: str) -> Iterator[AIPowerSite]:
    """A local 2.x site (release 2.4.71, what chatgptfree.ai runs), through each transport."""
    with AIPowerSite("2.4.71") as running:
        yield running


@pytest.fixture(params=["1.8.96", "2.4.71"])
def either(request: pytest.FixtureRequest, transport: str) -> Iterator[AIPowerSite]:
    """The local site of each generation, through each transport."""
    with AIPowerSite(request.param) as running:
        yield running


@pytest.fixture
def plain_site() -> Iterator[AIPowerSite]:
    """The 1.x site through httpx2 only: for what the transport does not touch (files,
    the plugin's commands, prompts refused before any request)."""
    with AIPowerSite("1.8.96") as running:
        yield running


@pytest.fixture
def plain_site2() -> Iterator[AIPowerSite]:
    """The 2.x site through httpx2 only, as ``plain_site``."""
    with AIPowerSite("2.4.71") as running:
        yield running


@pytest.fixture(params=["1.8.96", "2.4.71"])
def each_generation(request: pytest.FixtureRequest) -> Iterator[AIPowerSite]:
    """The site of each generation through httpx2 only, as ``plain_site``."""
    with AIPowerSite(request.param) as running:
        yield running


@pytest.fixture(params=["1.8.79", "1.8.85", "1.8.91", "1.8.96", "2.2", "2.3", "2.4.71"])
def any_site(request: pytest.FixtureRequest) -> Iterator[AIPowerSite]:
    """The local site, once per plugin release it can play (httpx2 only)."""
    with AIPowerSite(request.param) as running:
        yield running


def run(*args: str, input: str | None = None) -> Result:
    """Run the real ``llm`` command line in-process."""
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def logs_json(*args: str) -> list[dict]:
    """What ``llm logs --json`` shows, oldest first."""
    result = run("logs", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def logged_responses() -> list[dict]:
    """Every logged turn, oldest first."""
    return logs_json("-n", "0")


def sync_model() -> llm.Model:
    return llm.get_model("chatgptfree")


def async_model() -> llm.AsyncModel:
    return llm.get_async_model("chatgptfree")
