"""Shared fixtures: a private llm user directory per test and a local AI Power site.

Nothing here sets ``sys._called_from_test``: that would stop llm from loading this
plugin's entry point and make the CLI re-raise errors instead of printing them.
"""

from __future__ import annotations

import json
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
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "LLM_RAISE_ERRORS",
)


@pytest.fixture(autouse=True)
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own llm directory (keys, logs, the page cache) and no proxy."""
    path = tmp_path / "llm-user"
    monkeypatch.setenv("LLM_USER_PATH", str(path))
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(llm_chatgptfree, "RETRY_PAUSE", 0.05)
    return path


@pytest.fixture
def site() -> Iterator[AIPowerSite]:
    """A local WordPress site with the AI Power chat box (release 1.8.96) on 127.0.0.1."""
    with AIPowerSite("1.8.96") as running:
        yield running


@pytest.fixture(params=["1.8.79", "1.8.85", "1.8.91", "1.8.96"])
def any_site(request: pytest.FixtureRequest) -> Iterator[AIPowerSite]:
    """The local site, once per plugin release captured in the samples."""
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
