"""The tests' local AI Power site answers like the real one: each captured request, sent
again to it with raw httpx2, gets the captured answer (status, headers and body, byte for
byte once what the real plugin makes random or time-dependent is normalised), and its
stand-in model sees the same messages. Then: the fault catalogue, the pages, 2.x memory,
TLS, connection counting, stopping, and the command line."""

from __future__ import annotations

import contextlib
import json
import re
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2
import pytest

from tests.aipower_site import AIPowerSite, Fault, PageVariant
from tests.aipower_site.faults import TARGETS
from tests.aipower_site.pages import configs, encode_config
from tests.captures import (
    RELEASES,
    RELEASES_2X,
    SAMPLES,
    captures,
    read_request,
    read_response,
)

CAPTURED = "127.0.0.1:8088"
NONCE_1X, NONCE_2X = "e302406566", "e492389ffd"
ANSWER = "Hello from the fake upstream. You said: "
UNICODE = ' Ünïcödé → 日本語テキスト, emoji 🙂👍🏽 and a quote " and a backslash \\ done.'
NEWLINES = "FAKE_NEWLINES\nLine two.\nLine three."
SESSION = "5f0c3f1e-6a2b-4c8d-9e7f-0a1b2c3d4e5f"


def unicode_reply(messages: list[dict]) -> str:
    return ANSWER + messages[-1]["content"] + UNICODE


def long_reply(messages: list[dict]) -> str:
    return " ".join(f"word{i}" for i in range(300))


# scenario -> the site's knobs that play it (the real stand-in reacted to magic words)
SCENARIOS_1X = {
    "01-sse-ok": {},
    "02-sse-unicode": {"reply": unicode_reply},
    "03-sse-long-finish-length": {"reply": long_reply, "fault": "incomplete"},
    "04-sse-upstream-401": {"fault": "upstream_401"},
    "06-sse-in-stream-error": {"fault": "stream_error"},
    "07-sse-upstream-cut": {"fault": "upstream_cut"},
    "08-sse-history": {},
    "09-sse-multiline-message": {},
    "10-get-query-stream": {},
    "11-bad-nonce": {},
    "12-bad-nonce-no-referer": {},
    "13-missing-nonce": {},
    "14-empty-message": {},
    "15-minimal-g4f-fields": {},
    "16-no-action": {},
    "17-json-body": {},
    "18-unknown-action": {},
    "19-bot-json": {},
    "20-widget-action": {},
    "21-json-ok": {"stream": False},
    "22-json-unicode": {"stream": False, "reply": unicode_reply},
    "23-json-upstream-401": {"stream": False, "fault": "upstream_401"},
    "24-json-newlines-answer": {"stream": False, "reply": lambda m: ANSWER + NEWLINES},
    "25-bot-sse": {"bot_stream": True},
    "26-sse-fragmented-upstream": {"reply": unicode_reply, "fault": "fragmented"},
    "27-legacy-sse": {"legacy_model": True},
    "28-legacy-json": {"legacy_model": True, "stream": False},
}
KNOBS_2X = {
    "04-stream-unicode": {"reply": unicode_reply},
    "05-stream-long-incomplete": {"reply": long_reply, "fault": Fault.INCOMPLETE},
    "06-stream-upstream-401": {"fault": Fault.UPSTREAM_401},
    "07-stream-upstream-429": {"fault": Fault.UPSTREAM_429},
    "08-stream-in-stream-error": {"fault": Fault.STREAM_ERROR},
    "09-stream-response-failed": {"fault": Fault.RESPONSE_FAILED},
    "10-stream-upstream-cut": {"fault": Fault.UPSTREAM_CUT},
    "11-stream-fragmented-upstream": {"reply": unicode_reply, "fault": Fault.FRAGMENTED},
    "12-json-unicode": {"reply": unicode_reply},
    "13-json-long-incomplete": {"reply": long_reply, "fault": Fault.INCOMPLETE},
    "14-json-upstream-401": {"fault": Fault.UPSTREAM_401},
    "15-json-upstream-429": {"fault": Fault.UPSTREAM_429},
}
EARLIER_TURN = {"29-turn2-same-conversation": "28-turn1-stream",
                "33-stream-special-chars-turn2": "32-stream-special-chars"}  # fmt: skip
RANDOM = [  # what the real plugin makes random or time-dependent
    (rb"aipkit_sse_[A-Za-z0-9]{32}", b"aipkit_sse_KEY"),
    (rb"aipkit-msg-[0-9a-f]{13}\d\.?\d{8}", b"aipkit-msg-ID"),
    (rb"err-\d{10}", b"err-TIME"),
    (rb"resp_fake\d{6}", b"resp_fakeN"),
    (rb"(chatcmpl|cmpl)-fake\d+", rb"\1-fakeID"),
]
TODAY = re.compile(r"Today's date is [A-Z][a-z]+ \d{1,2}, \d{4}\.")


def normalised(body: bytes) -> bytes:
    for pattern, replacement in RANDOM:
        body = re.sub(pattern, replacement, body)
    return body


def undated(messages: list[list[dict]]) -> list[list[dict]]:
    return [[{**m, "content": TODAY.sub("DATE", m["content"])} for m in call] for call in messages]


def comparable(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Headers but Date; a Content-Length (checked against the body) as ``N``: it holds the
    site's port number's length."""
    return [(k, "N" if k == "Content-Length" else v) for k, v in headers if k != "Date"]


def client() -> httpx2.Client:
    """A plain-HTTP client (no CA file to load: fast)."""
    return httpx2.Client(timeout=10, verify=False)


class Replayer:
    """Sends captured requests to a running site, rewritten to its address and nonce."""

    normalise = staticmethod(normalised)  # what the real plugin made random, made equal

    def __init__(self, site: AIPowerSite, captured_nonce: str, http: httpx2.Client) -> None:
        self.site, self.captured_nonce, self.client = site, captured_nonce, http
        self.address = site.base_url.removeprefix("http://")
        self.keys: dict[str, str] = {}  # captured cache key -> the one the site issued

    def here(self, text: str) -> str:
        text = text.replace(CAPTURED, self.address).replace(self.captured_nonce, self.site.nonce)
        for old, new in self.keys.items():
            text = text.replace(old, new)
        return text

    def send(self, request_txt: Path) -> httpx2.Response:
        captured = read_request(request_txt)
        headers = {name: self.here(value) for name, value in captured.headers.items()}
        body = self.here(captured.body.decode()).encode()
        return self.client.request(
            captured.method, self.here(captured.url), headers=headers, content=body
        )

    def check(self, folder: Path, step: str) -> httpx2.Response:
        """Send ``<step>.request.txt`` and compare the answer with ``<step>.response.http``."""
        response = self.send(folder / f"{step}.request.txt")
        expected = read_response(folder / f"{step}.response.http")
        assert response.status_code == expected.status
        body = response.content.replace(self.address.encode(), CAPTURED.encode())
        body = body.replace(self.site.nonce.encode(), self.captured_nonce.encode())
        assert self.normalise(body) == self.normalise(expected.body)
        headers = [(k.decode(), v.decode()) for k, v in response.headers.raw]
        assert comparable(headers) == comparable(expected.headers)
        if "content-length" in response.headers:
            assert int(response.headers["content-length"]) == len(response.content)
        if b'"cache_key"' in expected.body:
            old = json.loads(expected.body)["data"]["cache_key"]
            self.keys[old] = response.json()["data"]["cache_key"]
        return response


@pytest.mark.parametrize(("release", "scenario"), captures(RELEASES_2X))
def test_a_2x_site_answers_each_captured_request_as_captured(release, scenario):
    folder = SAMPLES / release
    with AIPowerSite(release) as site, client() as http:
        replayer = Replayer(site, NONCE_2X, http)
        if scenario in EARLIER_TURN:
            earlier = EARLIER_TURN[scenario]
            replayer.check(folder, f"{earlier}.cache")
            replayer.check(folder, earlier)
            site.reset_counts()
        for knob, value in KNOBS_2X.get(scenario, {}).items():
            setattr(site, knob, value)
        for step in (f"{scenario}.cache", f"{scenario}.first-stream"):
            if (folder / f"{step}.request.txt").exists():
                replayer.check(folder, step)
        if scenario == "24-stream-expired-cache-key":
            site.advance_clock(61)
        replayer.check(folder, scenario)
        upstream = folder / f"{scenario}.upstream.json"
        calls = json.loads(upstream.read_text()) if upstream.exists() else []
        assert undated(site.upstream) == undated([call["body"]["input"] for call in calls])
        assert site.errors == []


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("scenario", list(SCENARIOS_1X))
def test_a_1x_site_answers_each_captured_request_as_captured(release, scenario):
    folder = SAMPLES / release
    with AIPowerSite(release) as site, client() as http:
        for knob, value in SCENARIOS_1X[scenario].items():
            setattr(site, knob, value)
        Replayer(site, NONCE_1X, http).check(folder, scenario)
        upstream = folder / f"{scenario}.upstream.json"
        if upstream.exists():  # the site's HTTP library may have called the model twice
            call = json.loads(upstream.read_text())[0]["body"]
            assert site.upstream == [call.get("messages") or [{"prompt": call["prompt"]}]]
        else:
            assert site.upstream == []


def test_release_2_2_is_1x_code_with_its_own_version():
    with AIPowerSite("2.2") as site:
        assert site.generation == "1.x"
        page = httpx2.get(site.chat_url).text
        assert "ver=2.2" in page and "ver=1.8.96" not in page
        form = {"action": "wpaicg_chat_shortcode_message", "_wpnonce": site.nonce,
                "message": "Hi", "post_id": "6"}  # fmt: skip
        assert b"data: [DONE]" in httpx2.post(site.ajax_url, data=form).content


# -- helpers for the tests below ------------------------------------------------------------

CACHE, STREAM = "aipkit_cache_sse_message", "aipkit_frontend_chat_stream"
ROOT = Path(__file__).parent.parent


def cache_step(site: AIPowerSite, http: httpx2.Client, message: str = "Hi", bot: int = 4):
    form = {"action": CACHE, "message": message, "_ajax_nonce": site.nonce, "bot_id": str(bot)}
    return http.post(site.ajax_url, data=form)


def stream_query(key: str, nonce: str, bot=4, conversation="c1", session=SESSION) -> dict:
    return {"action": STREAM, "cache_key": key, "bot_id": bot, "session_id": session,
            "conversation_uuid": conversation, "_ajax_nonce": nonce}  # fmt: skip


def stream_step(site, http, key, bot=4, conversation="c1", session=SESSION) -> httpx2.Response:
    query = stream_query(key, site.nonce, bot, conversation, session)
    return http.get(site.ajax_url, params=query)


def ask(site, http, message="Hi", bot=4, conversation="c1", session=SESSION) -> bytes:
    """A 2.x message, both steps; the stream's body."""
    key = cache_step(site, http, message, bot).json()["data"]["cache_key"]
    return stream_step(site, http, key, bot, conversation, session).content


def events(body: bytes) -> list[tuple[str, object]]:
    """(event name, JSON data) of each SSE frame."""
    found = []
    for block in body.decode("utf-8", "replace").split("\n\n"):
        name, data = "message", None
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        if data is not None:
            found.append((name, data))
    return found


def answer(body: bytes) -> str:
    return "".join(data["delta"] for name, data in events(body) if name == "message")


def error_of(body: bytes) -> dict | None:
    return next((data for name, data in events(body) if name == "error"), None)


# -- pages ----------------------------------------------------------------------------------


def test_pages_carry_the_current_nonce_and_the_site_address():
    with AIPowerSite("1.8.91") as site:
        page = httpx2.get(site.chat_url).text
        assert f'data-nonce="{site.nonce}"' in page
        assert f'data-url="{site.base_url}/chat"' in page
        assert "127.0.0.1:8088" not in page
        old = site.nonce
        site.rotate_nonce()
        assert site.nonce != old and f'data-nonce="{site.nonce}"' in httpx2.get(site.chat_url).text
        site.page_nonce_override = old
        assert f'data-nonce="{old}"' in httpx2.get(site.bot_url).text


@pytest.mark.parametrize("release", RELEASES_2X)
def test_2x_pages_are_the_captured_ones_at_this_sites_address(release):
    with AIPowerSite(release) as site, client() as http:
        port = str(site.port)
        for url, name in ((site.home_url, "page-home.html"), (site.chat_url, "page-chat.html"),
                          (site.bot_url, "page-bot.html")):  # fmt: skip
            page = http.get(url).text
            assert {c["nonce"] for c in configs(page)} == {site.nonce}
            assert {c["ajaxUrl"] for c in configs(page)} == {site.ajax_url}
            back = re.sub(rf"127\.0\.0\.1(:|%3A){port}", r"127.0.0.1\g<1>8088", page)
            assert back.replace(site.nonce, NONCE_2X) == (SAMPLES / release / name).read_text()
        assert http.get(site.base_url + "/nowhere/").status_code == 404


@pytest.mark.parametrize("release", RELEASES_2X)
def test_data_config_is_written_as_the_plugin_writes_it(release):
    for name in ("page-home.html", "page-chat.html", "page-bot.html"):
        page = (SAMPLES / release / name).read_text()
        written = re.findall(r"data-config='([^']*)'", page)
        assert written and [encode_config(c) for c in configs(page)] == written


def test_2x_page_variants():
    with AIPowerSite("2.4.71") as site, client() as http:
        site.page_variant = "popup"
        page = http.get(site.chat_url).text
        assert re.findall(r'aipkit_popup_wrapper_(\d+)" data-config=', page) == ["4", "5"]
        assert re.search(r'id="aipkit_chat_container_4" [^>]*data-config', page) is None
        site.page_variant = PageVariant.DOUBLE_QUOTED
        page = http.get(site.chat_url).text
        assert "data-config='" not in page and [c["botId"] for c in configs(page)] == [4, 5]
        site.page_variant = "duplicate_bot"
        assert [c["botId"] for c in configs(http.get(site.chat_url).text)] == [4, 4, 5]
        site.page_variant = "several"
        assert [c["botId"] for c in configs(http.get(site.chat_url).text)] == [4, 5]
        site.page_variant = "no_chatbox"
        assert configs(http.get(site.chat_url).text) == []
        assert [c["botId"] for c in configs(http.get(site.bot_url).text)] == [5]
        site.page_variant = "cloudflare_503"
        assert http.get(site.chat_url).status_code == 503
        with pytest.raises(ValueError):
            site.page_variant = "minified"  # a 1.x variant
        with pytest.raises(ValueError):
            site.page_variant = "popupp"


def test_the_chatgptfree_variant_shows_nine_bots_that_answer():
    with AIPowerSite("2.4.71") as site, client() as http:
        site.page_variant = PageVariant.CHATGPTFREE
        home = configs(http.get(site.home_url).text)
        assert [(c["botId"], c["headerName"]) for c in home] == [
            (25865, "GPT-4o Mini"), (25871, "GPT-5 Nano"), (25874, "Gemini"),
            (25873, "DeepSeek"), (25875, "Claude"), (25872, "Grok"), (25870, "Llama"),
            (25869, "Qwen"), (29624, "Perplexity"),
        ]  # fmt: skip
        assert {c["postId"] for c in home} == {6}
        chat = configs(http.get(site.chat_url).text)
        assert [(c["botId"], c["postId"]) for c in chat] == [(25874, 261)]
        for config in home:
            body = ask(site, http, "Hi", bot=config["botId"])
            assert answer(body) == ANSWER + "Hi", config["headerName"]
            names = [name for name, _ in events(body)]
            assert ("openai_response_id" in names) == (config["provider"] == "OpenAI")
        assert answer(ask(site, http, bot=25873)) and events(ask(site, http, bot=25873))[1] == (
            "message",
            {"delta": ""},
        )  # DeepSeek's first delta is empty


def test_1x_page_faults_about_content():
    with AIPowerSite("1.8.96") as site, client() as http:
        site.page_faults = [Fault.FOREIGN_AJAX_URL, Fault.CDATA_PAGE, Fault.HUGE_PAGE]
        page = http.get(site.chat_url).text
        assert page.index("collector.example.net") < page.index("var wpaicgParams")
        assert "<![ " in http.get(site.chat_url).text
        assert len(http.get(site.chat_url).content) > 20_000_000


def test_redirects_and_the_foreign_ajax_url_lead_to_another_port():
    with AIPowerSite("2.4.71") as site, client() as http:
        site.page_faults = [Fault.REDIRECT_FOREIGN, Fault.REDIRECT_SAME]
        moved = http.get(site.chat_url, follow_redirects=True)
        assert moved.url.port != site.port and configs(moved.text)[0]["ajaxUrl"] == site.ajax_url
        assert site.foreign_requests[-1].path == "/chat/"
        moved = http.get(site.chat_url, follow_redirects=True)
        assert moved.url.port == site.port and len(moved.history) == 1
        site.page_faults = [Fault.FOREIGN_AJAX_URL]
        boxes = configs(http.get(site.chat_url).text)
        assert boxes[0]["ajaxUrl"] == site.foreign_url + "/wp-admin/admin-ajax.php"
        assert [c["ajaxUrl"] for c in boxes[1:]] == [site.ajax_url] * 2
        http.post(boxes[0]["ajaxUrl"], data={"action": CACHE, "message": "secret"})
        assert site.foreign_requests[-1].form["message"] == "secret"


# -- the 2.x stand-in and the site's memory -------------------------------------------------


def test_each_sse_frame_is_its_own_http_chunk():
    with AIPowerSite("2.4.71") as site, client() as http:
        site.answer_deltas = 5
        key = cache_step(site, http).json()["data"]["cache_key"]
        with socket.create_connection(("127.0.0.1", site.port), timeout=5) as sock:
            target = f"/wp-admin/admin-ajax.php?action={STREAM}&cache_key={key}&bot_id=4"
            target += f"&session_id=s&conversation_uuid=c&_ajax_nonce={site.nonce}"
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            raw = b""
            while piece := sock.recv(65536):
                raw += piece
        body, chunks = raw.partition(b"\r\n\r\n")[2], []
        while (size := int(body[: body.index(b"\r\n")], 16)) > 0:
            start = body.index(b"\r\n") + 2
            chunks.append(body[start : start + size])
            body = body[start + size + 2 :]
        assert all(chunk.endswith(b"\n\n") and chunk.count(b"\n\n") == 1 for chunk in chunks)
        deltas = [data["delta"] for name, data in events(b"".join(chunks)) if name == "message"]
        assert deltas == [" w0", " w1", " w2", " w3", " w4"]


def test_conversation_memory_window_errors_and_warnings():
    with AIPowerSite("2.4.71") as site, client() as http:
        for turn in range(9):
            ask(site, http, f"turn {turn}", conversation="long")
        assert len(site.upstream[-1]) == 1 + 15 + 1  # system, the last 15 stored, the message
        assert site.upstream[-1][1] == {"role": "assistant", "content": ANSWER + "turn 0"}
        site.reset_counts()
        site.faults = [Fault.UPSTREAM_401, Fault.INCOMPLETE]
        ask(site, http, "one", conversation="failing")
        ask(site, http, "two", conversation="failing")
        ask(site, http, "three", conversation="failing")
        earlier = [m["content"] for m in site.upstream[-1][1:-1]]
        assert earlier[1].startswith("Error: API Error: Incorrect API key provided")
        assert earlier[3] == ANSWER + "two (Incomplete: max_output_tokens)"


def test_the_history_endpoint_reports_provider_model_and_usage():
    with AIPowerSite("2.4.71") as site, client() as http:
        ask(site, http, "Hi", bot=5, conversation="h")
        form = {"action": "aipkit_get_conversation_history", "_ajax_nonce": site.nonce,
                "bot_id": "5", "session_id": SESSION, "conversation_uuid": "h"}  # fmt: skip
        user, bot = http.post(site.ajax_url, data=form).json()["data"]["history"]
        assert (user["role"], user["content"]) == ("user", "Hi")
        assert (bot["role"], bot["provider"], bot["model"]) == ("bot", "OpenAI", "gpt-4.1-nano")
        assert set(bot["usage"]) == {"input_tokens", "output_tokens", "total_tokens"}
        assert bot["request_payload"]["payload_sent"]["input"] == site.upstream[-1]
        site.history_model_usage = {"model": "gpt-4.1-nano-2025-04-14"}
        bot = http.post(site.ajax_url, data=form).json()["data"]["history"][-1]
        assert bot["model"] == "gpt-4.1-nano-2025-04-14"
        refused = http.post(site.ajax_url, data={**form, "_ajax_nonce": "0"})
        assert (refused.status_code, refused.json()["data"]["code"]) == (403, "nonce_failure")


def test_quota_bans_and_keys():
    with AIPowerSite("2.4.71") as site, client() as http:
        site.guest_quota = 1
        assert answer(ask(site, http))
        refused = ask(site, http)
        assert error_of(refused)["quota_notice"]["type"] == "quota_notice"
        assert events(refused)[-1] == ("done", {"finished": True})
        assert answer(ask(site, http, session="another visitor"))
        site.guest_quota = 0
        assert error_of(ask(site, http))["error"] == "Access disabled for guests."
        site.guest_quota, site.banned_words = None, ["Spam"]
        assert "prohibited words" in error_of(ask(site, http, "buy spam now"))["error"]
        assert answer(ask(site, http, "spammy is fine"))
        site.banned_words, site.banned_ip = [], True
        assert "IP address" in error_of(ask(site, http))["error"]
        site.banned_ip = False
        key = cache_step(site, http).json()["data"]["cache_key"]
        assert answer(stream_step(site, http, key.upper()).content)  # matched case-insensitively
        key = cache_step(site, http).json()["data"]["cache_key"]
        site.advance_clock(59)
        assert answer(stream_step(site, http, key).content)  # keys live 60 s
        assert site.errors == []


def test_nonces_tick_with_the_site_clock():
    with AIPowerSite("2.4.71") as site, client() as http:
        old = site.nonce
        site.advance_clock(12 * 3600)
        assert site.nonce != old and site.nonce_ok(old)  # the previous tick still counts
        refreshed = http.post(site.ajax_url, data={"action": "aipkit_get_frontend_chat_nonce"})
        assert refreshed.json() == {"success": True, "data": {"nonce": site.nonce}}
        site.advance_clock(12 * 3600)
        assert not site.nonce_ok(old)
        assert http.options(site.ajax_url).status_code == 200


def test_the_2_3_non_stream_message_and_streaming_switches():
    with AIPowerSite("2.3") as site, client() as http:
        site.bot_stream = True
        assert [c["streamEnabled"] for c in configs(http.get(site.chat_url).text)] == [True, True]
        form = {"action": "aipkit_frontend_chat_message", "bot_id": "8", "session_id": "s",
                "conversation_uuid": "c", "message": "<b>Hi</b> "}  # fmt: skip
        reply = http.post(site.ajax_url, data=form).json()["data"]
        assert reply["reply"] == ANSWER + "Hi" and "." not in reply["message_id"]
        assert site.upstream[-1][1:] == [{"role": "user", "content": "Hi"}] * 2


# -- faults ---------------------------------------------------------------------------------


def test_faults_are_taken_by_the_requests_they_concern():
    with AIPowerSite("2.4.71") as site, client() as http:
        site.faults = [(Fault.HTTP_503, "stream"), Fault.CACHE_NONCE, "http_500", "redirect_same"]
        site.page_faults = ["http_502"]
        assert http.get(site.chat_url).status_code == 502  # page_faults first
        assert http.get(site.chat_url).status_code == 302  # then a page fault of the queue
        assert cache_step(site, http).status_code == 403  # the cache step's own fault
        assert cache_step(site, http).status_code == 500  # "any" admin-ajax request
        key = cache_step(site, http).json()["data"]["cache_key"]
        assert site.faults == [(Fault.HTTP_503, "stream")]
        assert stream_step(site, http, key).status_code == 503
        assert answer(ask(site, http)) == ANSWER + "Hi" and site.faults == []
        site.fault = Fault.KEY_LOST  # every stream, none of the cache steps
        for _ in range(2):
            assert error_of(ask(site, http))["error"] == "Message not found in cache."
        site.fault = None
        assert answer(ask(site, http))
    with AIPowerSite("1.8.96") as site, client() as http:
        site.faults.append("http_503")  # a 1.x POST takes an "any" fault
        form = {"action": "wpaicg_chat_shortcode_message", "_wpnonce": site.nonce,
                "message": "Hi", "post_id": "6"}  # fmt: skip
        assert http.post(site.ajax_url, data=form).status_code == 503
        assert b"data: [DONE]" in http.post(site.ajax_url, data=form).content


def test_fault_names_are_checked():
    site = AIPowerSite("2.4.71")
    for wrong in (lambda: site.faults.append("http_5O3"), lambda: setattr(site, "fault", "no"),
                  lambda: setattr(site, "faults", [(Fault.RESET, "stram")]),
                  lambda: site.page_faults.extend(["nope"])):  # fmt: skip
        with pytest.raises(ValueError):
            wrong()
    assert Fault("http_503") is Fault.HTTP_503 and Fault.HTTP_503 == "http_503"
    assert all(fault.target in TARGETS and fault.help for fault in Fault)


SMOKE_RELEASES = {"1.x": "1.8.96", "2.x": "2.4.71"}
# fault -> (status or None for a broken transfer, a pattern the outcome shows, bytes it lacks)
EXPECTED: dict[Fault, tuple[int | None, bytes | re.Pattern, bytes]] = {
    Fault.CLOUDFLARE_403: (403, b"<title>Just a moment...</title>", b""),
    Fault.CLOUDFLARE_503: (503, b"cf-mitigated: challenge", b""),
    Fault.HTTP_500: (500, b"<h1>500 Internal Server Error</h1>", b""),
    Fault.HTTP_502: (502, b"<h1>502 Bad Gateway</h1>", b""),
    Fault.HTTP_503: (503, b"<h1>503 Service Unavailable</h1>", b""),
    Fault.HTTP_504: (504, b"<h1>504 Gateway Timeout</h1>", b""),
    Fault.WP_CRITICAL: (500, b"There has been a critical error", b""),
    Fault.RESET: (None, b"", b""),
    Fault.SLOW: (None, b"", b""),
    Fault.ZERO_200: (200, b"\n\n0", b""),
    Fault.ECHO_COOKIE: (500, b"cookies secret=1", b""),
    Fault.DRIP: (200, b"\n\n", b""),
    Fault.GZIP_BOMB: (200, re.compile(rb"content-encoding: gzip.*\n\n\x1f\x8b\x08", re.S), b""),
    Fault.OVERSTATED_LENGTH: (200, b"<RemoteProtocolError>", b""),
    Fault.DEEP_JSON: (200, b'{"success":true,"data":[[[[[[[[', b""),
    Fault.FRAGMENTED: (200, b"\n\n", b"<"),
    Fault.BOM: (200, b"\n\n\xef\xbb\xbf", b""),
    Fault.CR_ONLY: (200, b"\r\r", b"\n\n\n"),
    Fault.CUT: (200, re.compile(rb'" from"\}.*<(RemoteProtocolError|ReadError)>', re.S), b'" the"'),
    Fault.STALL: (
        200,
        re.compile(rb'" from"\}.*<(RemoteProtocolError|ReadError)>', re.S),
        b'" the"',
    ),
    Fault.ENDLESS_LINE: (200, b'data: {"delta":"xxxxxxxxxxxxxxxx', b""),
    Fault.UPSTREAM_401: (200, re.compile(rb'(API Error: |"content":")Incorrect'), b""),
    Fault.UPSTREAM_429: (200, re.compile(rb"Rate limit reached|Incorrect", re.S), b""),
    Fault.STREAM_ERROR: (200, re.compile(rb'\(Code: server_error\)|"type":"server_error"'), b""),
    Fault.RESPONSE_FAILED: (200, b'"error":" (Error: The server had an error', b"event: done"),
    Fault.UPSTREAM_CUT: (200, b'" from"', b'" the"'),
    Fault.CONNECTION_ERROR: (200, b"Connection Error: Operation timed out", b"event: done"),
    Fault.INCOMPLETE: (200, re.compile(rb'"finish_reason":"length"|\(Incomplete: max_'), b""),
    Fault.EMPTY: (200, b"\n\n", b'"Hello"'),
    Fault.BIG: (200, b"lorem ipsum dolor sit amet lorem ipsum", b""),
    Fault.INVALID_UTF8: (200, b"\xff\xfe", b""),
    Fault.OPENROUTER: (200, b": OPENROUTER PROCESSING\n\n", b""),
    Fault.STATUS_ONLY: (200, b'"response.in_progress"', b'"delta"'),
    Fault.CITATIONS: (200, b"event: citations\ndata: [{", b""),
    Fault.UNKNOWN_EVENT: (200, b"event: aipkit_unknown_event", b""),
    Fault.NO_DONE: (200, b'" said:"', b"event: done"),
    Fault.DONE_OPEN: (200, b"<RemoteProtocolError>", b""),
    Fault.NO_AI: (200, b"Unable to initialize the AI instance", b""),
    Fault.LIMITED: (200, b"data: [LIMITED]", b""),
    Fault.TOKEN_LIMIT: (
        200,
        re.compile(rb"your token limit|your quota for this period", re.S),
        b"",
    ),
    Fault.QUOTA: (200, b'"quota_notice":{"type":"quota_notice"', b"message_start"),
    Fault.GUEST_DISABLED: (200, b"Access disabled for guests.", b"message_start"),
    Fault.IP_BANNED: (
        200,
        re.compile(rb"not allowed to access|IP address has been blocked", re.S),
        b"",
    ),
    Fault.WORD_BANNED: (200, re.compile(rb"contains prohibited words", re.S), b""),
    Fault.FLAGGED: (200, b"flagged by the moderation system", b"message_start"),
    Fault.API_KEY_MISSING: (200, b"API key missing for OpenAI.", b"message_start"),
    Fault.STREAM_NONCE: (200, b"Security check failed. Please refresh", b"message_start"),
    Fault.CACHE_NONCE: (403, b'"code":"nonce_failure_cache_sse"', b""),
    Fault.KEY_LOST: (200, b"Message not found in cache.", b""),
    Fault.KEY_EXPIRED: (200, b"Cached message has expired.", b""),
    Fault.CORS_DENIED: (200, b"This domain is not permitted to access the chatbot.", b""),
    Fault.REDIRECT_SAME: (302, b"aipower_redirected=1", b""),
    Fault.REDIRECT_FOREIGN: (302, b"aipower_redirected=1", b""),
    Fault.EXPIRED_LINK_403: (403, b"The link you followed has expired.", b""),
    Fault.MINUS_ONE_403: (403, b"\n\n-1", b""),
    Fault.HUGE_PAGE: (200, b"<p>Lorem ipsum dolor sit amet", b""),
    Fault.LT_PAGE: (200, b"\n\n<<<<<<<<<<", b""),
    Fault.A_PAGE: (200, b"\n\n<a <a <a <a ", b""),
    Fault.CDATA_PAGE: (200, b"<![ ", b""),
    Fault.FOREIGN_AJAX_URL: (200, b"admin-ajax.php", b""),
}
LIMITS = {Fault.DRIP: 40}


@pytest.fixture(scope="module")
def smoke_sites():
    sites = {
        generation: AIPowerSite(release).start() for generation, release in SMOKE_RELEASES.items()
    }
    yield sites
    for site in sites.values():
        site.stop()


def outcome(site: AIPowerSite, http: httpx2.Client, target: str, limit: int) -> bytes:
    """Status, headers and at most ``limit`` bytes of the body (``<Error>`` if it broke)."""
    if target == "page":
        method, url, options = "GET", site.chat_url, {}
    elif target == "cache":
        form = {"action": CACHE, "message": "Hi", "_ajax_nonce": site.nonce, "bot_id": "4"}
        method, url, options = "POST", site.ajax_url, {"data": form}
    elif site.generation == "2.x":
        key = cache_step(site, http).json()["data"]["cache_key"]
        query = stream_query(key, site.nonce)
        method, url, options = "GET", site.ajax_url, {"params": query}
    else:
        form = {"action": "wpaicg_chat_shortcode_message", "_wpnonce": site.nonce,
                "message": "Hi", "post_id": "6"}  # fmt: skip
        method, url, options = "POST", site.ajax_url, {"data": form}
    got = b""
    try:
        with http.stream(method, url, headers={"Cookie": "secret=1"}, **options) as response:
            head = [f"{response.status_code}"] + [f"{k}: {v}" for k, v in response.headers.items()]
            got = "\n".join(head).encode() + b"\n\n"
            for piece in response.iter_raw():
                got += piece
                if len(got) > limit:
                    break
    except httpx2.TransportError as error:
        got += f"<{type(error).__name__}>".encode()
    return got


CASES = [(generation, fault) for fault in Fault for generation in fault.generations]


@pytest.mark.parametrize(("generation", "fault"), CASES, ids=[f"{g}-{f}" for g, f in CASES])
def test_every_fault_plays(smoke_sites, generation, fault):
    site = smoke_sites[generation]
    site.slow_seconds, site.drip_interval, site.big_answer_bytes = 0.2, 0.0005, 50_000
    target = {"any": "chat"}.get(fault.target, fault.target)
    target = "stream" if generation == "2.x" and target == "chat" else target
    site.faults = [(fault, target)]
    started = time.monotonic()
    with client() as http:
        got = outcome(site, http, target, LIMITS.get(fault, 1_000_000))
    assert time.monotonic() - started < 5
    assert site.faults == [] and site.errors == []
    status, present, absent = EXPECTED[fault]
    if status is None:
        assert got.startswith(b"<"), got[:200]
    else:
        assert got.startswith(f"{status}\n".encode()), got[:300]
    found = present.search(got) if isinstance(present, re.Pattern) else present in got
    assert found, got[:3000]
    assert not absent or absent not in got


def test_every_fault_is_expected_somewhere():
    assert set(EXPECTED) == set(Fault)


# -- the server -----------------------------------------------------------------------------


def test_stop_leaves_no_thread_behind():
    before = set(threading.enumerate())
    site = AIPowerSite("2.4.71").start()
    site.slow_seconds = 60
    idle = client()
    idle.get(site.chat_url)  # a kept-alive connection, left open
    site.fault = Fault.DONE_OPEN  # and a stream that never ends

    def never_ending() -> None:
        with client() as http, contextlib.suppress(httpx2.TransportError):
            ask(site, http)

    reader = threading.Thread(target=never_ending)
    reader.start()
    deadline = time.monotonic() + 5
    while not site.ajax_requests(STREAM) and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    site.stop()
    assert time.monotonic() - started < 2
    reader.join(5)
    idle.close()
    assert set(threading.enumerate()) - before == set()


def test_tls():
    with AIPowerSite("2.4.71", tls=True) as site:
        assert site.base_url.startswith("https://127.0.0.1:") and Path(site.ca_path).exists()
        with httpx2.Client(verify=ssl.create_default_context(cafile=site.ca_path)) as http:
            assert configs(http.get(site.chat_url).text)[0]["ajaxUrl"] == site.ajax_url
            assert answer(ask(site, http)) == ANSWER + "Hi"
        with pytest.raises(httpx2.ConnectError):
            httpx2.get(site.chat_url)  # no system CA vouches for it
        ca_path = site.ca_path
    assert not Path(ca_path).exists()


def test_connections_are_counted_at_the_server():
    with AIPowerSite("1.8.96") as site:
        with client() as http:
            for _ in range(3):
                http.get(site.chat_url)
        assert site.connections == 1
        with client() as http:
            http.get(site.bot_url)
        assert site.connections == 2
        assert [r.connection_id for r in site.requests] == [1, 1, 1, 2]
        site.reset_counts()
        assert (site.connections, site.requests) == (0, [])


def test_the_command_line_lists_the_faults():
    listed = subprocess.run(
        [sys.executable, "-m", "tests.aipower_site", "--list-faults"],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    names = [line.split()[0] for line in listed.stdout.splitlines()[1:]]
    assert names == [fault.value for fault in Fault]


def test_the_command_line_serves_a_site_until_killed():
    command = [sys.executable, "-m", "tests.aipower_site", "--release", "2.4.71", "--port", "0",
               "--fault", "quota"]  # fmt: skip
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert select.select([process.stdout], [], [], 20)[0], "the site did not start"
            home = re.search(r"http://127\.0\.0\.1:\d+/", process.stdout.readline())[0]
            with client() as http:
                [config] = configs(http.get(home).text)
                form = {"action": CACHE, "message": "Hi", "_ajax_nonce": config["nonce"],
                        "bot_id": "4"}  # fmt: skip
                key = http.post(config["ajaxUrl"], data=form).json()["data"]["cache_key"]
                query = stream_query(key, config["nonce"])
                body = http.get(config["ajaxUrl"], params=query).content
            assert error_of(body)["error"] == "You have reached your quota for this period."
        finally:
            process.kill()
            process.wait(timeout=10)
