"""The tests' local AI Power site answers like the real one: each captured request, sent
again to it with raw httpx2, gets the captured answer (status, headers and body, byte for
byte once what the real plugin makes random or time-dependent is normalised), and its
stand-in model sees the same messages. Then: the fault catalogue, the pages, 2.x memory,
TLS, connection counting, stopping, and the command line."""

from __future__ import annotations

import json
import re
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
    split_capture,
)

CAPTURED = "127.0.0.1:8088"
NONCE_1X, NONCE_2X = "e302406566", "e492389ffd"
ANSWER = "Hello from the fake upstream. You said: "
UNICODE = ' Ünïcödé → 日本語テキスト, emoji 🙂👍🏽 and a quote " and a backslash \\ done.'
SESSION = "5f0c3f1e-6a2b-4c8d-9e7f-0a1b2c3d4e5f"


def unicode_reply(messages: list[dict]) -> str:
    return ANSWER + messages[-1]["content"] + UNICODE


def long_reply(messages: list[dict]) -> str:
    return " ".join(f"word{i}" for i in range(300))


# scenario -> the site's knobs that play it (the real stand-in reacted to magic words)
SCENARIOS_1X = {
    "01-sse-ok": {},
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
    "23-json-upstream-401": {"stream": False, "fault": "upstream_401"},
    "25-bot-sse": {"bot_stream": True},
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


class Replayer:
    """Sends captured requests to a running site, rewritten to its address and nonce."""

    def __init__(self, site: AIPowerSite, captured_nonce: str) -> None:
        self.site, self.captured_nonce = site, captured_nonce
        self.address = site.base_url.removeprefix("http://")
        self.keys: dict[str, str] = {}  # captured cache key -> the one the site issued
        self.client = httpx2.Client(timeout=10)

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
        assert normalised(body) == normalised(expected.body)
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
    with AIPowerSite(release) as site:
        replayer = Replayer(site, NONCE_2X)
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
    with AIPowerSite(release) as site:
        for knob, value in SCENARIOS_1X[scenario].items():
            setattr(site, knob, value)
        Replayer(site, NONCE_1X).check(folder, scenario)
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
