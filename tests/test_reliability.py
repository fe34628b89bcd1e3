"""Chats that survive blips, the page cache, concurrency, and what the user typed."""

from __future__ import annotations

import asyncio
import json
import stat
import threading
import time

import llm
import pytest

import llm_chatgptfree
from tests.aipower_site import AIPowerSite, Fault
from tests.conftest import async_model, run, sync_model

ANSWER = "Hello from the fake upstream. You said: "


# -- llm chat carries on after a blip --------------------------------------------------------


BLIPS = {
    "expired nonce": lambda s: s.rotate_nonce(),
    "reset before the first byte": lambda s: s.faults.append(Fault.RESET),
    "HTTP 502": lambda s: s.faults.append(Fault.HTTP_502),
    "HTTP 503": lambda s: s.faults.append(Fault.HTTP_503),
    "HTTP 504": lambda s: s.faults.append(Fault.HTTP_504),
    "HTTP 503 on the stream": lambda s: s.faults.append((Fault.HTTP_503, "stream")),
    "lost cache key": lambda s: s.faults.append(Fault.KEY_LOST),
    "model rate limited": lambda s: s.faults.append(Fault.UPSTREAM_429),
}
ONLY_2X = {"HTTP 503 on the stream", "lost cache key", "model rate limited"}


@pytest.mark.parametrize(
    ("release", "blip"),
    [(release, blip) for blip in BLIPS for release in ("1.8.96", "2.4.71")
     if release == "2.4.71" or blip not in ONLY_2X],
)  # fmt: skip
def test_a_chat_survives_a_blip_on_its_second_turn(release, blip, transport, monkeypatch):
    with AIPowerSite(release) as either:
        chat_survives(either, blip, monkeypatch)


def chat_survives(either: AIPowerSite, blip: str, monkeypatch: pytest.MonkeyPatch) -> None:
    original = llm_chatgptfree.Exchange.steps
    turns = []

    def steps(self):
        turns.append(self.message)
        if len(turns) == 2:
            BLIPS[blip](either)
        return original(self)

    monkeypatch.setattr(llm_chatgptfree.Exchange, "steps", steps)
    result = run(
        "chat", "-m", "chatgptfree", "-o", "site", either.chat_url,
        input="one\ntwo\nthree\nquit\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "Error" not in result.output
    messages = [seen[-1]["content"] for seen in either.upstream]
    assert len(set(messages)) == 3, "every turn reached the model"
    assert len(messages) == 3 + (blip == "model rate limited"), "and once, but for a retry"
    assert either.upstream[-1][-1]["content"].endswith("User: three\nAssistant:")


# -- the page cache --------------------------------------------------------------------------


def cache_file(user_dir):
    return user_dir / "chatgptfree" / "pages.json"


def fresh_process(monkeypatch):
    monkeypatch.setattr(llm_chatgptfree, "PAGE_CACHE", llm_chatgptfree.PageCache())


def test_the_cache_file_is_private_and_reused_for_ten_hours(each_generation, user_dir, monkeypatch):
    either = each_generation
    run("-m", "chatgptfree", "-o", "site", either.chat_url, "one")
    path = cache_file(user_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["format"] == 2
    assert data["sites"][either.chat_url]["preferred"]["nonce"] == either.nonce
    fresh_process(monkeypatch)
    nine_hours_later = time.time() + 9 * 3600
    monkeypatch.setattr(time, "time", lambda: nine_hours_later)
    run("-m", "chatgptfree", "-o", "site", either.chat_url, "two")
    assert either.page_gets == 1
    eleven_hours_later = nine_hours_later + 2 * 3600
    monkeypatch.setattr(time, "time", lambda: eleven_hours_later)
    run("-m", "chatgptfree", "-o", "site", either.chat_url, "three")
    assert either.page_gets == 2


def test_one_page_read_serves_every_bot_on_it(site2):
    run("chatgptfree", "sites", "add", "second", site2.chat_url, "--bot", "5")
    gets = site2.page_gets  # adding a site reads its bots once
    run("-m", "chatgptfree", "-o", "site", site2.chat_url, "to the first bot")
    run("-m", "chatgptfree/second", "to the second bot")
    assert site2.page_gets == gets + 1
    bots = [r.form["bot_id"] for r in site2.ajax_requests("aipkit_cache_sse_message")]
    assert bots == ["4", "5"]


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"format": 99, "sites": {}}', b"\xff\xfe", b'{"format": 2, "sites": 3}',
     b'{"format": 2, "sites": {"x": {"first": {"nonce": 5}}}}', b"[" * 100_000],
    ids=["corrupt", "future-format", "binary", "wrong-shape", "wrong-fields", "deep"],
)  # fmt: skip
def test_a_bad_cache_file_is_ignored_and_rewritten(plain_site, user_dir, content):
    site = plain_site
    path = cache_file(user_dir)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    result = run("-m", "chatgptfree", "-o", "site", site.chat_url, "Hi")
    assert (result.exit_code, result.output) == (0, ANSWER + "Hi\n")
    assert json.loads(path.read_text())["format"] == 2


def test_a_cache_that_cannot_be_written_never_fails_a_prompt(each_generation, user_dir):
    either = each_generation
    cache_file(user_dir).mkdir(parents=True)  # a folder where the file should be
    for _ in range(2):
        result = run("-m", "chatgptfree", "-o", "site", either.chat_url, "Hi")
        assert (result.exit_code, result.output) == (0, ANSWER + "Hi\n")
    assert either.page_gets == 1, "the in-memory copy still serves the process"


# -- concurrency -----------------------------------------------------------------------------


def test_concurrent_async_prompts_read_the_page_once(either):
    async def ask_all():
        model = async_model()
        responses = [model.prompt(f"q{i}", site=either.chat_url) for i in range(12)]
        return await asyncio.gather(*(r.text() for r in responses))

    answers = asyncio.run(ask_all())
    assert answers == [ANSWER + f"q{i}" for i in range(12)]
    assert either.page_gets == 1
    assert len(either.upstream) == 12


def test_concurrent_threads_read_the_page_once(either):
    either.page_delay = 0.2
    answers = {}

    def ask(i):
        answers[i] = sync_model().prompt(f"q{i}", site=either.chat_url).text()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert answers == {i: ANSWER + f"q{i}" for i in range(8)}
    assert either.page_gets == 1


# -- what the user typed reaches the model intact --------------------------------------------


ODD = [
    "x" * 1_000_000,
    "NUL \x00 and controls \x01\x07\x1b[31m",
    "emoji 🙂👍🏽 and ZWJ 👩‍👩‍👧",
    "right to left: שלום עולם مرحبا",
    "quotes \" and \\ backslash \\\" and 'single'",
    "%41 percent-escapes and <b>tags</b> &amp; & < >",
    "line one\nline two\r\nline three\ttab",
    "0",
]


@pytest.mark.parametrize(
    "text", ODD, ids=["1MB", "control", "emoji", "rtl", "quotes", "tags", "lines", "zero"]
)
def test_odd_input_reaches_the_site_intact(either, text):
    answer = sync_model().prompt(text, site=either.chat_url).text()
    if either.generation == "2.x":
        sent = either.ajax_requests("aipkit_cache_sse_message")[-1].form["message"]
        assert sent == (text + "\n" if text == "0" else text)
        if "\x00" not in text and text != "0":  # the site drops NUL bytes, trims "0\n"
            assert either.upstream[-1][-1]["content"] == text
        if text == "0":
            assert either.upstream[-1][-1]["content"] == "0"
    else:
        assert either.requests[-1].form["message"] == text
    assert answer.startswith(ANSWER)


def test_quotes_in_an_earlier_turn_reach_the_site_intact(either):
    conversation = sync_model().conversation()
    conversation.prompt('say "hi" \\ back', site=either.chat_url).text()
    conversation.prompt("again", site=either.chat_url).text()
    message = either.upstream[-1][-1]["content"]
    assert message.startswith('User: say "hi" \\ back\nAssistant: ')


@pytest.mark.parametrize("text", ["", " ", "\n\t "])
def test_blank_prompts_are_refused_before_any_request(each_generation, text):
    either = each_generation
    with pytest.raises(llm.ModelError, match="The prompt is empty"):
        sync_model().prompt(text, site=either.chat_url).text()
    assert either.requests == []
