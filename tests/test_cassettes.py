"""Replays of recorded exchanges (pytest-recording / VCR.py), with no server running.

The cassettes in tests/cassettes/test_cassettes/ were recorded from the tests' own local
AI Power site (tests/aipower_site/, releases 1.8.96 and 2.4.71) listening on 127.0.0.1:8088, the
address at which the real captures of tests/samples were made. Re-record them with:

    pytest tests/test_cassettes.py --record-mode=rewrite

Against a live site (never in CI, which cannot reach one):

    CHATGPTFREE_LIVE=https://chatgptfree.ai/ pytest -m live --record-mode=rewrite \
        tests/test_cassettes.py

Cookies, the client id and Set-Cookie headers are scrubbed before anything is written.

The plugin speaks HTTP through h11 (and curl_cffi), beneath what VCR.py patches, so
the cassette is put in as the plugin's transport (``cassette_transport``): each request
is matched and answered by VCR.py's own cassette, or, while recording, sent to the local
site and appended to it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
from vcr.request import Request as VcrRequest

import llm_chatgptfree
from tests.aipower_site import AIPowerSite
from tests.conftest import logs_json, run

RECORDED_SITE = "http://127.0.0.1:8088"
ANSWER = "Hello from the fake upstream. You said: "
LIVE_SITE = os.environ.get("CHATGPTFREE_LIVE")


def scrub_response(response: dict) -> dict:
    headers = response.get("headers", {})
    for name in [n for n in headers if n.lower() == "set-cookie"]:
        del headers[name]
    return response


@pytest.fixture(scope="module")
def vcr_config() -> dict:
    return {
        "filter_headers": ["cookie", "authorization", "proxy-authorization"],
        "filter_post_data_parameters": [
            ("wpaicg_chat_client_id", "CLIENTID00"),
            ("user_client_message_id", "aipkit-client-msg-0"),
        ],
        "filter_query_parameters": [("session_id", "00000000-0000-4000-8000-000000000000")],
        "before_record_response": scrub_response,
        "decode_compressed_response": True,
        # the refresh after a rejected nonce adds a unique cache-busting query
        "match_on": ["method", "scheme", "host", "port", "path"],
    }


class CassetteBody:
    def __init__(self, body: bytes) -> None:
        self.body = body

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.body:
            yield self.body

    async def aclose(self) -> None:
        pass


class CassetteTransport:
    """The plugin's transport, answered from a VCR.py cassette (or recorded into it)."""

    def __init__(self, cassette) -> None:
        self.cassette = cassette
        self.sent: list[str] = []  # "METHOD path" of every request, in order

    def get(self, settings, url):
        return self

    async def send(self, request, idle):
        content, described = llm_chatgptfree.request_content(request)
        headers = {**described, **request.headers}
        wanted = VcrRequest(request.method, request.url, content, headers)
        self.sent.append(f"{request.method} {wanted.path}")
        if self.cassette.can_play_response_for(wanted):
            recorded = self.cassette.play_response(wanted)
        else:
            recorded = await self.record(request, wanted, idle)
        head = [(k, v) for k, values in recorded["headers"].items() for v in values]
        status = recorded["status"]
        reply = llm_chatgptfree.reply_of(status["code"], status["message"], head, request.url)
        body = recorded["body"]["string"]
        return reply, CassetteBody(body.encode() if isinstance(body, str) else body)

    async def record(self, request, wanted, idle: float) -> dict:
        real = llm_chatgptfree.H11Transport(None, tls=request.url.startswith("https"))
        try:
            reply, body = await real.send(request, idle)
            chunks = [chunk async for chunk in body.chunks()]
            await body.aclose()
        finally:
            await real.aclose()
        headers = {"content-type": [reply.headers.get("content-type", "")]}
        recorded = {
            "status": {"code": reply.status, "message": reply.reason},
            "headers": headers,
            "body": {"string": b"".join(chunks)},
        }
        self.cassette.append(wanted, recorded)
        return recorded


@pytest.fixture(autouse=True)
def cassette_transport(vcr, monkeypatch: pytest.MonkeyPatch) -> CassetteTransport | None:
    if vcr is None:
        return None
    transport = CassetteTransport(vcr)

    async def loop_pool():
        return transport

    monkeypatch.setattr(llm_chatgptfree, "loop_pool", loop_pool)
    return transport


def recording(record_mode: str, release: str) -> Iterator[AIPowerSite | None]:
    """The local site on the recorded address while recording; nothing when replaying."""
    if record_mode == "none":
        yield None
        return
    with AIPowerSite(release, port=8088) as site:
        yield site


@pytest.fixture
def recorded_site(record_mode: str) -> Iterator[AIPowerSite | None]:
    yield from recording(record_mode, "1.8.96")


@pytest.fixture
def recorded_site2(record_mode: str) -> Iterator[AIPowerSite | None]:
    yield from recording(record_mode, "2.4.71")


@pytest.mark.vcr
def test_replayed_prompt(recorded_site):
    result = run("-m", "gpt-4o-mini-2024-07-18", "-o", "site", f"{RECORDED_SITE}/chat/", "Hi")
    assert (result.exit_code, result.output) == (0, ANSWER + "Hi\n")
    [entry] = logs_json("-n", "1")
    assert entry["response_json"]["mode"] == "sse"
    assert entry["response_json"]["model"] == "gpt-4o-mini-2024-07-18"


@pytest.mark.vcr
def test_replayed_chat(recorded_site):
    result = run(
        "chat", "-m", "chatgptfree", "-o", "site", f"{RECORDED_SITE}/chat/",
        input="one\ntwo\nquit\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert ANSWER + "one" in result.output
    assert ANSWER + "User: one\nAssistant: " + ANSWER + "one\nUser: two" in result.output


@pytest.mark.vcr
def test_replayed_custom_bot_json(recorded_site):
    result = run("-m", "chatgptfree", "-o", "site", f"{RECORDED_SITE}/bot/", "Hi bot")
    assert (result.exit_code, result.output) == (0, ANSWER + "Hi bot\n")
    assert logs_json("-n", "1")[0]["response_json"]["mode"] == "json"


@pytest.mark.vcr
def test_replayed_nonce_refresh(recorded_site, monkeypatch):
    assert run("-m", "chatgptfree", "-o", "site", f"{RECORDED_SITE}/chat/", "A").exit_code == 0
    if recorded_site is not None:
        recorded_site.rotate_nonce()
    monkeypatch.setattr(llm_chatgptfree, "PAGE_CACHE", llm_chatgptfree.PageCache())
    result = run("-m", "chatgptfree", "-o", "site", f"{RECORDED_SITE}/chat/", "B")
    assert (result.exit_code, result.output) == (0, ANSWER + "B\n")


@pytest.mark.vcr
def test_replayed_2x_prompt(recorded_site2):
    result = run("-m", "chatgptfree", "-o", "site", f"{RECORDED_SITE}/chat/", "Hi")
    assert (result.exit_code, result.output) == (0, ANSWER + "Hi\n")
    [entry] = logs_json("-n", "1")
    assert entry["response_json"]["generation"] == "2.x"
    assert entry["response_json"]["bot"] == "Customer Support"


@pytest.mark.vcr
def test_replayed_2x_chat(recorded_site2):
    result = run(
        "chat", "-m", "chatgptfree", "-o", "site", f"{RECORDED_SITE}/chat/",
        input="one\ntwo\nquit\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert ANSWER + "User: one\nAssistant: " + ANSWER + "one\nUser: two" in result.output


@pytest.mark.vcr
def test_replayed_2x_nonce_refresh(recorded_site2, monkeypatch, cassette_transport):
    """A nonce that expired: a fresh one from the refresh endpoint, no second page read."""
    assert run("-m", "chatgptfree", "-o", "site", f"{RECORDED_SITE}/chat/", "A").exit_code == 0
    if recorded_site2 is not None:
        recorded_site2.rotate_nonce()
    monkeypatch.setattr(llm_chatgptfree, "PAGE_CACHE", llm_chatgptfree.PageCache())
    result = run("-m", "chatgptfree", "-o", "site", f"{RECORDED_SITE}/chat/", "B")
    assert (result.exit_code, result.output) == (0, ANSWER + "B\n")
    assert cassette_transport.sent.count("GET /chat/") == 1


@pytest.mark.live
@pytest.mark.vcr
@pytest.mark.skipif(not LIVE_SITE, reason="set CHATGPTFREE_LIVE to a live site's URL")
def test_live_site():  # pragma: no cover - needs the internet
    result = run("-m", "chatgptfree", "-o", "site", LIVE_SITE, "Say OK")
    assert result.exit_code == 0, result.output
    assert result.output.strip()
