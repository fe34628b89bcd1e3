"""Chats that survive blips, the nonce cache, concurrency, odd input and secrets."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import threading
import time

import llm
import pytest

import llm_chatgptfree
from tests.conftest import async_model, logs_json, run, sync_model

ANSWER = "Hello from the fake upstream. You said: "


# -- llm chat carries on after a blip ------------------------------------------------


def rotate(site):
    site.rotate_nonce()


BLIPS = {
    "expired nonce": rotate,
    "reset before the first byte": lambda s: s.faults.append("reset"),
    "HTTP 502": lambda s: s.faults.append("http_502"),
    "HTTP 503": lambda s: s.faults.append("http_503"),
    "HTTP 504": lambda s: s.faults.append("http_504"),
}


@pytest.mark.parametrize("blip", list(BLIPS))
def test_a_chat_survives_a_blip_on_its_second_turn(site, blip, monkeypatch):
    original = llm_chatgptfree.Exchange.steps
    turns = []

    def steps(self):
        turns.append(self.message)
        if len(turns) == 2:
            BLIPS[blip](site)
        return original(self)

    monkeypatch.setattr(llm_chatgptfree.Exchange, "steps", steps)
    result = run(
        "chat", "-m", "chatgptfree", "-o", "site", site.chat_url,
        input="one\ntwo\nthree\nquit\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "Error" not in result.output
    assert len(site.upstream) == 3, "every turn reached the model once"
    assert site.upstream[-1][-1]["content"].endswith("User: three\nAssistant:")


# -- the nonce cache -------------------------------------------------------------------


def cache_file(user_dir):
    return user_dir / "chatgptfree" / "pages.json"


def fresh_process(monkeypatch):
    monkeypatch.setattr(llm_chatgptfree, "PAGE_CACHE", llm_chatgptfree.PageCache())


def test_the_cache_file_is_private_and_reused_for_ten_hours(site, user_dir, monkeypatch):
    run("-m", "chatgptfree", "-o", "site", site.chat_url, "one")
    path = cache_file(user_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["format"] == 1 and data["sites"][site.chat_url]["nonce"] == site.nonce
    fresh_process(monkeypatch)
    nine_hours_later = time.time() + 9 * 3600
    monkeypatch.setattr(time, "time", lambda: nine_hours_later)
    run("-m", "chatgptfree", "-o", "site", site.chat_url, "two")
    assert site.page_gets == 1
    eleven_hours_later = nine_hours_later + 2 * 3600
    monkeypatch.setattr(time, "time", lambda: eleven_hours_later)
    run("-m", "chatgptfree", "-o", "site", site.chat_url, "three")
    assert site.page_gets == 2


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"format": 99, "sites": {}}', b"\xff\xfe",
     b'{"format": 1, "sites": 3}', b'{"format": 1, "sites": {"x": {"nonce": 5}}}'],
    ids=["corrupt", "future-format", "binary", "wrong-shape", "wrong-fields"],
)  # fmt: skip
def test_a_bad_cache_file_is_ignored_and_rewritten(site, user_dir, content):
    path = cache_file(user_dir)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    result = run("-m", "chatgptfree", "-o", "site", site.chat_url, "Hi")
    assert (result.exit_code, result.output) == (0, ANSWER + "Hi\n")
    assert json.loads(path.read_text())["format"] == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_cache_never_fails_a_prompt(site, user_dir):  # pragma: no cover
    folder = user_dir / "chatgptfree"
    folder.mkdir(parents=True)
    folder.chmod(0o500)
    try:
        result = run("-m", "chatgptfree", "-o", "site", site.chat_url, "Hi")
    finally:
        folder.chmod(0o700)
    assert result.exit_code == 0


def test_a_cache_that_cannot_be_written_never_fails_a_prompt(site, user_dir):
    cache_file(user_dir).mkdir(parents=True)  # a folder where the file should be
    for _ in range(2):
        result = run("-m", "chatgptfree", "-o", "site", site.chat_url, "Hi")
        assert (result.exit_code, result.output) == (0, ANSWER + "Hi\n")
    assert site.page_gets == 1, "the in-memory copy still serves the process"


def test_concurrent_async_prompts_fetch_the_page_once(site):
    async def ask_all():
        model = async_model()
        responses = [model.prompt(f"q{i}", site=site.chat_url) for i in range(12)]
        return await asyncio.gather(*(r.text() for r in responses))

    answers = asyncio.run(ask_all())
    assert answers == [ANSWER + f"q{i}" for i in range(12)]
    assert (site.page_gets, site.ajax_posts) == (1, 12)


def test_concurrent_threads_fetch_the_page_once(site):
    site.page_delay = 0.2
    answers = {}

    def ask(i):
        answers[i] = sync_model().prompt(f"q{i}", site=site.chat_url).text()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == {i: ANSWER + f"q{i}" for i in range(8)}
    assert site.page_gets == 1


# -- what the user typed reaches the server intact ---------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "x" * 1_000_000,
        "NUL \x00 and controls \x01\x07\x1b[31m",
        "emoji 🙂👍🏽 and ZWJ 👩‍👩‍👧",
        "right to left: שלום עולם مرحبا",
        "quotes \" and \\ backslash \\\" and 'single'",
        "%41 percent-escapes and <b>tags</b>",
    ],
    ids=["1MB", "control", "emoji", "rtl", "quotes", "percent-tags"],
)
def test_odd_input_reaches_the_server_intact(site, text):
    answer = sync_model().prompt(text, site=site.chat_url).text()
    assert site.requests[-1].form["message"] == text
    assert answer.startswith(ANSWER)


def test_quotes_in_an_earlier_turn_reach_the_server_intact(site):
    conversation = sync_model().conversation()
    conversation.prompt('say "hi" \\ back', site=site.chat_url).text()
    conversation.prompt("again", site=site.chat_url).text()
    message = site.requests[-1].form["message"]
    assert message.startswith('User: say "hi" \\ back\nAssistant: ')
    assert site.requests[-1].form["wpaicg_chat_history"] == "[]"


@pytest.mark.parametrize("text", ["", " ", "\n\t "])
def test_blank_prompts_are_refused_before_any_request(site, text):
    with pytest.raises(llm.ModelError, match="The prompt is empty"):
        sync_model().prompt(text, site=site.chat_url).text()
    assert site.requests == []


# -- secrets ---------------------------------------------------------------------------

COOKIE = "cf_clearance=SECRETcookieVALUE123; other=alsoSECRET456"


def test_cookies_are_sent_but_never_logged(site, user_dir):
    run("keys", "set", "chatgptfree", "--value", COOKIE)
    result = run("-m", "chatgptfree", "-o", "site", site.chat_url, "Hi")
    assert result.exit_code == 0
    assert "SECRETcookieVALUE123" in site.requests[-1].headers["cookie"]
    assert "SECRETcookieVALUE123" in site.requests[0].headers["cookie"]
    database = (user_dir / "logs.db").read_bytes()
    assert b"SECRETcookieVALUE123" not in database and b"alsoSECRET456" not in database
    assert "SECRET" not in json.dumps(logs_json("-n", "0"))


def test_cookies_from_the_environment(site, monkeypatch):
    monkeypatch.setenv("CHATGPTFREE_COOKIES", COOKIE)
    run("-m", "chatgptfree", "-o", "site", site.chat_url, "Hi")
    assert "other=alsoSECRET456" in site.requests[-1].headers["cookie"]


def test_a_cookie_never_reaches_an_error_message(site, monkeypatch):
    monkeypatch.setenv("CHATGPTFREE_COOKIES", COOKIE)
    site.fault = "echo_cookie"  # a broken site that prints the request's cookies
    result = run("-m", "chatgptfree", "-o", "site", site.chat_url, "Hi")
    assert result.exit_code == 1
    assert "SECRET" not in result.output


def test_a_proxy_password_is_used_but_never_logged(site, user_dir):
    proxy = f"http://alice:pr0xyPASSWORD@127.0.0.1:{site.port}"
    result = run("-m", "chatgptfree", "-o", "site", site.chat_url, "-o", "proxy", proxy, "Hi")
    assert (result.exit_code, result.output) == (0, ANSWER + "Hi\n")
    assert site.requests[-1].headers["proxy-authorization"].startswith("Basic ")
    assert site.requests[-1].proxied
    database = (user_dir / "logs.db").read_bytes()
    assert b"pr0xyPASSWORD" not in database
    [entry] = logs_json("-n", "1")
    assert entry["options_json"]["proxy"] == f"http://alice:***@127.0.0.1:{site.port}"


def test_the_standard_proxy_variables_are_honoured(site, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{site.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    result = run("-m", "chatgptfree", "-o", "site", site.chat_url, "Hi")
    assert (result.exit_code, result.output) == (0, ANSWER + "Hi\n")
    assert all(request.proxied for request in site.requests)


@pytest.mark.parametrize(
    ("proxy", "error"),
    [
        ("ftp://x.test", "proxy must be an http://, https:// or socks5:// URL"),
        ("http://", "proxy must be an http://, https:// or socks5:// URL"),
    ],
)
def test_a_bad_proxy_is_refused_before_any_request(site, proxy, error):
    result = run("-m", "chatgptfree", "-o", "site", site.chat_url, "-o", "proxy", proxy, "Hi")
    assert result.exit_code == 1 and error in result.output
    assert site.requests == []


def test_a_cookie_the_transport_cannot_send_is_one_sentence(site, monkeypatch):
    monkeypatch.setenv("CHATGPTFREE_COOKIES", "cf_clearance=caf\u00e9\u2603SECRET")
    result = run("-m", "chatgptfree", "-o", "site", site.chat_url, "Hi")
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ")
    assert "Traceback" not in result.output and "SECRET" not in result.output
