"""``llm chatgptfree clearance``: a real headless Chromium passes the local site's
JavaScript challenge, its cookies and User-Agent are kept per host, and the next prompt
answers through both transports; every failure is one sentence with no browser left.

Browser tests are skipped where no Chromium-family browser is on PATH (CI installs one).
Processes are counted by this test's own browser profile folder, in ``/proc/*/cmdline``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import llm_chatgptfree
from tests.aipower_site import AIPowerSite
from tests.aipower_site.challenge import SLOW_MS, token
from tests.conftest import async_model, run

ANSWER = "Hello from the fake upstream. You said: "
BROWSER = next(
    (
        found
        for name in ("chromium", "chromium-browser", "google-chrome")
        if (found := shutil.which(name))
    ),
    None,
)
needs_browser = pytest.mark.skipif(BROWSER is None, reason="no Chromium-family browser on PATH")


@pytest.fixture
def profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder this test's browser profiles are made in (and must be gone from)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def browser_processes(folder: Path) -> list[int]:
    """Live processes whose command line names ``folder`` (this test's browsers only)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(folder).encode() in command:
            found.append(int(entry.name))
    return found


def assert_no_browser_left(folder: Path) -> None:
    deadline = time.monotonic() + 5
    while browser_processes(folder) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert browser_processes(folder) == []
    assert list(folder.iterdir()) == []  # the profile is deleted


def challenged(release: str, variant: str) -> AIPowerSite:
    site = AIPowerSite(release)
    site.page_variant = variant
    return site


@pytest.fixture
def challenge_site(transport: str) -> Iterator[AIPowerSite]:
    with challenged("1.8.96", "challenge") as site:
        yield site


def saved_file(user_dir: Path) -> dict:
    return json.loads((user_dir / "chatgptfree" / "cookies.json").read_text())


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


# -- the local site's challenge ---------------------------------------------------------------


def test_the_site_serves_its_pages_only_with_the_clearance_of_the_same_user_agent():
    import httpx2

    with challenged("2.4.71", "challenge") as site:
        agent = "Mozilla/5.0 test"
        cookie = f"cf_clearance={token(site.challenge.secret, agent)}"
        blocked = httpx2.get(site.chat_url, headers={"User-Agent": agent})
        assert blocked.status_code == 403
        assert blocked.headers["cf-mitigated"] == "challenge"
        assert "<title>Just a moment...</title>" in blocked.text
        passed = httpx2.get(site.chat_url, headers={"User-Agent": agent, "Cookie": cookie})
        assert passed.status_code == 200 and "data-config" in passed.text
        other = httpx2.get(site.chat_url, headers={"User-Agent": "another", "Cookie": cookie})
        assert other.status_code == 403
        ajax = httpx2.post(site.ajax_url, data={"action": "x"}, headers={"User-Agent": agent})
        assert ajax.status_code == 403  # every path, as on Cloudflare


# -- passing the check ------------------------------------------------------------------------


@needs_browser
def test_clearance_is_kept_and_the_next_prompt_answers(challenge_site, profiles, user_dir):
    site = challenge_site
    result = run("chatgptfree", "clearance", site.chat_url, "--headless", "--timeout", "60")
    assert result.exit_code == 0, result.output
    host = f"127.0.0.1:{site.port}"
    assert f"Saved 2 cookies for {host} (cf_clearance until " in result.output
    assert "and the User-Agent of Chromium" in result.output
    assert f"Waiting up to 60 s for the chat box on {host}" in result.stderr
    path = user_dir / "chatgptfree" / "cookies.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = saved_file(user_dir)
    cookies, clearance = data["hosts"][host], data["clearances"][host]
    assert set(cookies) == {"cf_clearance", "__cf_bm"}  # not localhost's cookie
    assert cookies["cf_clearance"] == token(site.challenge.secret, clearance["user_agent"])
    assert "HeadlessChrome" not in clearance["user_agent"]
    assert clearance["expires"]["cf_clearance"] > time.time() + 3000
    for value in cookies.values():
        assert value not in result.output
    assert_no_browser_left(profiles)

    site.reset_counts()
    answered = run("-m", "chatgptfree", "-o", "site", site.chat_url, "hi")
    assert answered.exit_code == 0, answered.output
    assert answered.output == ANSWER + "hi\n"
    assert {r.headers["user-agent"] for r in site.requests} == {clearance["user_agent"]}

    logged = (user_dir / "logs.db").read_bytes()
    for value in cookies.values():
        assert value.encode() not in logged

    listed = run("chatgptfree", "cookies", "list")
    assert f"{host}: __cf_bm, cf_clearance (clearance by Chromium" in listed.output
    assert ", until " in listed.output
    for value in cookies.values():
        assert value not in listed.output


@needs_browser
def test_a_slow_check_on_a_2x_site_is_waited_for(profiles, user_dir):
    with challenged("2.4.71", "challenge-slow") as site:
        blocked = run("-m", "chatgptfree", "-o", "site", site.chat_url, "hi")
        host = f"127.0.0.1:{site.port}"
        assert f"'llm chatgptfree clearance {host}'" in one_error_line(blocked.output)
        started = time.monotonic()
        result = run("chatgptfree", "clearance", site.chat_url, "--headless", "--timeout", "60")
        assert result.exit_code == 0, result.output
        assert time.monotonic() - started >= SLOW_MS / 1000  # the page's script waits that long
        assert_no_browser_left(profiles)
        answered = run("-m", "chatgptfree", "-o", "site", site.chat_url, "hi")
        assert answered.output == ANSWER + "hi\n"


@needs_browser
@pytest.mark.parametrize("variant", ["challenge-never", "challenge-click"])
def test_a_check_never_passed_ends_after_the_bound(variant, profiles, user_dir):
    with challenged("1.8.96", variant) as site:
        started = time.monotonic()
        result = run("chatgptfree", "clearance", site.chat_url, "--headless", "--timeout", "2")
        took = time.monotonic() - started
    assert result.exit_code == 1
    line = one_error_line(result.output)
    assert line.startswith(f"Error: The check on 127.0.0.1:{site.port} was not passed within 2 s")
    assert 2 <= took < 22
    assert not (user_dir / "chatgptfree" / "cookies.json").exists()
    assert_no_browser_left(profiles)


@needs_browser
def test_the_click_variant_passes_once_its_button_is_clicked(profiles):
    # what a person does in the window, done over the same DevTools connection
    click = "(() => { const b = document.getElementById('verify'); b && b.click(); return !!b; })()"
    with challenged("2.4.71", "challenge-click") as site:
        with llm_chatgptfree.Browser(BROWSER, headless=True) as browser:
            browser.call("Page.navigate", url=site.chat_url)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                answer = browser.call("Runtime.evaluate", expression=click)
                if answer["result"].get("value"):
                    break
                time.sleep(0.1)
            llm_chatgptfree.wait_for_chat_box(browser, site.chat_url, 20)
        assert site.challenge.passed >= 1
    assert_no_browser_left(profiles)


# -- failures: one sentence each -------------------------------------------------------------


def test_a_missing_browser_is_one_sentence(profiles, tmp_path, monkeypatch):
    result = run("chatgptfree", "clearance", "http://127.0.0.1:9/", "--browser", "/no/browser")
    assert result.exit_code == 1
    assert one_error_line(result.output).startswith("Error: No browser at '/no/browser'")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(llm_chatgptfree, "BROWSER_PATHS", ())
    result = run("chatgptfree", "clearance", "http://127.0.0.1:9/")
    line = one_error_line(result.output)
    assert "No Chromium-family browser found" in line and "apt-get install chromium" in line


def test_without_the_extra_the_command_says_what_to_install(monkeypatch):
    monkeypatch.setattr(llm_chatgptfree, "module_available", lambda name: name != "websockets")
    result = run("chatgptfree", "clearance", "http://127.0.0.1:9/", "--headless")
    assert result.exit_code == 1
    assert "llm install 'llm-chatgptfree[clearance]'" in one_error_line(result.output)


def fake_browser(folder: Path, body: str) -> str:
    path = folder / "fake-chrome"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_a_browser_that_exits_at_once_is_one_sentence(profiles, tmp_path):
    browser = fake_browser(tmp_path, "exit 1")
    result = run(
        "chatgptfree", "clearance", "http://127.0.0.1:9/", "--headless", "--browser", browser
    )
    assert result.exit_code == 1
    line = one_error_line(result.output)
    assert line == f"Error: Chrome ({browser}) exited with code 1 before it could be driven."
    assert_no_browser_left(profiles)


@needs_browser
def test_a_browser_that_crashes_while_waiting_is_one_sentence(profiles, tmp_path):
    # the real browser, killed two seconds after it started
    browser = fake_browser(tmp_path, f'"{BROWSER}" "$@" & sleep 2; kill -9 $!; exit 0')
    with challenged("1.8.96", "challenge-never") as site:
        started = time.monotonic()
        result = run("chatgptfree", "clearance", site.chat_url, "--headless", "--browser", browser)
    assert time.monotonic() - started < 20
    assert result.exit_code == 1
    line = one_error_line(result.output)
    assert line.startswith("Error: Chrome closed before the check was passed")
    assert_no_browser_left(profiles)


@needs_browser
def test_ctrl_c_while_waiting_closes_the_browser(user_dir):
    # a short TMPDIR: the browser's socket path in it must fit in 108 bytes
    folder = Path(tempfile.mkdtemp(prefix="clearance-", dir="/tmp"))
    env = {**os.environ, "TMPDIR": str(folder), "LLM_USER_PATH": str(user_dir)}
    with challenged("1.8.96", "challenge-never") as site:
        command = [sys.executable, "-m", "llm", "chatgptfree", "clearance", site.chat_url]
        process = subprocess.Popen(
            [*command, "--headless", "--timeout", "60"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while not site.challenge.challenged and time.monotonic() < deadline:
                time.sleep(0.1)
            assert browser_processes(folder), "the browser did not start"
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            leftover = browser_processes(folder)
            shutil.rmtree(folder, ignore_errors=True)
    assert leftover == []
    assert process.returncode != 0
    assert out == ""
    assert (
        err.splitlines()[-1] == "Error: Interrupted: the browser is closed and nothing was saved."
    )
    assert one_error_line(err)


# -- what is kept, and what is sent ----------------------------------------------------------


def write_cookies(user_dir: Path, data: dict) -> None:
    folder = user_dir / "chatgptfree"
    folder.mkdir(exist_ok=True)
    (folder / "cookies.json").write_text(json.dumps(data))


def test_an_old_cookies_file_still_loads_and_keeps_working(site, user_dir):
    host = f"127.0.0.1:{site.port}"
    write_cookies(user_dir, {"format": 1, "hosts": {host: {"cf_clearance": "old-value"}}})
    result = run("-m", "chatgptfree", "-o", "site", site.chat_url, "hi")
    assert result.output == ANSWER + "hi\n"
    assert "cf_clearance=old-value" in site.requests[0].headers["cookie"]
    assert run("chatgptfree", "cookies", "list").output == f"{host}: cf_clearance\n"


def test_the_stored_user_agent_is_sent_and_expired_cookies_are_not(site, user_dir, monkeypatch):
    host = f"127.0.0.1:{site.port}"
    clearance = {
        "user_agent": "Mozilla/5.0 Stored/1",
        "browser": "Chromium 156",
        "saved_at": 1.0,
        "expires": {"cf_clearance": 1000.0, "fresh": time.time() + 3600},
    }
    hosts = {host: {"cf_clearance": "gone-value", "fresh": "kept-value"}}
    write_cookies(user_dir, {"format": 1, "hosts": hosts, "clearances": {host: clearance}})
    result = run("-m", "chatgptfree", "-o", "site", site.chat_url, "hi")
    assert result.output == ANSWER + "hi\n"
    first = site.requests[0].headers
    assert first["user-agent"] == "Mozilla/5.0 Stored/1"
    assert "fresh=kept-value" in first["cookie"] and "gone-value" not in first["cookie"]
    listed = run("chatgptfree", "cookies", "list").output
    expired = "(clearance by Chromium 156, expired 1970-01-01 00:16 UTC)"
    assert listed == f"{host}: cf_clearance, fresh {expired}\n"
    site.reset_counts()
    monkeypatch.setenv("CHATGPTFREE_USER_AGENT", "Mozilla/5.0 Override/2")
    run("-m", "chatgptfree", "-o", "site", site.chat_url, "hi again")
    assert site.requests[0].headers["user-agent"] == "Mozilla/5.0 Override/2"


def test_new_cookies_for_a_host_drop_its_clearance(user_dir):
    clearance = {"user_agent": "UA", "browser": "Chromium 156", "saved_at": 1.0, "expires": {}}
    hosts = {"a.example": {"x": "1"}, "b.example": {"y": "2"}}
    clearances = {"a.example": clearance, "b.example": clearance}
    write_cookies(user_dir, {"format": 1, "hosts": hosts, "clearances": clearances})
    assert run("chatgptfree", "cookies", "set", "a.example", "x=3").exit_code == 0
    assert run("chatgptfree", "cookies", "remove", "b.example").exit_code == 0
    run("chatgptfree", "cookies", "set", "c.example", "z=4")
    data = saved_file(user_dir)
    assert set(data["hosts"]) == {"a.example", "c.example"}
    assert "clearances" not in data


def test_a_user_agent_that_could_inject_a_header_is_refused(site, user_dir):
    host = f"127.0.0.1:{site.port}"
    clearance = {"user_agent": "UA\r\nX-Evil: 1", "browser": "x", "saved_at": 1.0, "expires": {}}
    write_cookies(
        user_dir, {"format": 1, "hosts": {host: {"a": "b"}}, "clearances": {host: clearance}}
    )
    result = run("-m", "chatgptfree", "-o", "site", site.chat_url, "hi")
    assert result.exit_code == 1
    assert "has no usable user_agent" in one_error_line(result.output)
    assert site.requests == []


def test_a_challenge_names_the_command_and_an_expired_clearance(user_dir):
    with challenged("1.8.96", "challenge") as site:
        host = f"127.0.0.1:{site.port}"
        result = run("-m", "chatgptfree", "-o", "site", site.chat_url, "hi")
        line = one_error_line(result.output)
        assert f"with 'llm chatgptfree clearance {host}'" in line
        clearance = {"user_agent": "UA", "browser": "C", "saved_at": 1.0,
                     "expires": {"cf_clearance": 1000.0}}  # fmt: skip
        write_cookies(
            user_dir,
            {"format": 1, "hosts": {host: {"cf_clearance": "v"}}, "clearances": {host: clearance}},
        )
        result = run("-m", "chatgptfree", "-o", "site", site.chat_url, "hi")
        assert "its stored clearance expired 1970-01-01 00:16 UTC" in one_error_line(result.output)


# -- a prompt that runs the clearance itself ---------------------------------------------------


@needs_browser
def test_with_the_setting_a_prompt_passes_the_check_itself_once(
    challenge_site, profiles, monkeypatch
):
    monkeypatch.setenv("CHATGPTFREE_AUTO_CLEARANCE", "1")
    result = run("-m", "chatgptfree", "-o", "site", challenge_site.chat_url, "hi")
    assert result.exit_code == 0, result.output
    assert result.output == ANSWER + "hi\n"
    assert_no_browser_left(profiles)


@needs_browser
def test_the_async_model_passes_the_check_itself_too(profiles, monkeypatch):
    monkeypatch.setenv("CHATGPTFREE_AUTO_CLEARANCE", "1")
    with challenged("2.4.71", "challenge") as site:

        async def ask() -> str:
            return await async_model().prompt("hi", site=site.chat_url).text()

        assert asyncio.run(ask()) == ANSWER + "hi"
    assert_no_browser_left(profiles)


@needs_browser
def test_the_automatic_clearance_is_bounded_and_tried_once(profiles, monkeypatch):
    monkeypatch.setenv("CHATGPTFREE_AUTO_CLEARANCE", "1")
    monkeypatch.setattr(llm_chatgptfree, "AUTO_CLEARANCE_SECONDS", 1.0)
    with challenged("1.8.96", "challenge-never") as site:
        result = run("-m", "chatgptfree", "-o", "site", site.chat_url, "hi")
        line = one_error_line(result.output)
        assert "the automatic clearance (CHATGPTFREE_AUTO_CLEARANCE) failed" in line
        assert "was not passed within 1 s" in line
        ours = [
            r for r in site.requests if r.headers.get("user-agent") == llm_chatgptfree.USER_AGENT
        ]
        assert len(ours) == 1  # the prompt's page once: no second try after a failed clearance
    assert_no_browser_left(profiles)


def test_the_automatic_clearance_without_a_browser_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("CHATGPTFREE_AUTO_CLEARANCE", "1")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(llm_chatgptfree, "BROWSER_PATHS", ())
    with challenged("1.8.96", "challenge") as site:
        result = run("-m", "chatgptfree", "-o", "site", site.chat_url, "hi")
    line = one_error_line(result.output)
    assert "automatic clearance" in line and "apt-get install chromium" in line


CHROME_120 = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)


@pytest.mark.skipif(not llm_chatgptfree.module_available("curl_cffi"), reason="[browser] extra")
def test_curl_plays_the_browser_that_earned_the_clearance(plain_site, user_dir, monkeypatch):
    """A cf_clearance is bound to its browser: curl plays the profile closest to the stored
    User-Agent, with client hints of the same browser; a profile named by the user stands."""
    site = plain_site
    monkeypatch.setenv("CHATGPTFREE_IMPERSONATE", "chrome")
    host = f"127.0.0.1:{site.port}"
    clearance = {"user_agent": CHROME_120, "browser": "Chrome 120", "saved_at": 1.0,
                 "expires": {"cf_clearance": time.time() + 3600}}  # fmt: skip
    write_cookies(user_dir, {"format": 1, "hosts": {host: {"cf_clearance": "v"}},
                             "clearances": {host: clearance}})  # fmt: skip
    played = []
    real = llm_chatgptfree.CurlTransport.__init__

    def recording(self, proxy, profile):
        played.append(profile)
        real(self, proxy, profile)

    monkeypatch.setattr(llm_chatgptfree.CurlTransport, "__init__", recording)
    llm_chatgptfree.reset_blocking_pool()
    assert run("-m", "chatgptfree", "-o", "site", site.chat_url, "hi").output == ANSWER + "hi\n"
    assert played == ["chrome120"]
    headers = site.requests[0].headers
    assert (headers["user-agent"], headers["sec-ch-ua"].count('v="120"')) == (CHROME_120, 2)
    played.clear()
    llm_chatgptfree.reset_blocking_pool()
    run("-m", "chatgptfree", "-o", "site", site.chat_url, "-o", "impersonate", "chrome131", "hi")
    assert played == ["chrome131"]
