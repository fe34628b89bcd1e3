"""The baselines of the benchmarks: the least a client of each protocol must do.

The same requests as the plugin (fields, and the headers that matter), sent with a bare
``httpx2`` client or a bare ``curl_cffi`` session, each answer parsed the plainest way:
split into lines, ``json.loads`` of each text frame, up to the end marker, and every body
read to its end so that a reused client keeps its connection. No retries, no limits, no
error handling: the least work, not a usable client. The chat box (nonce, bot, URLs) is
given, as a warm page cache gives it to the plugin.

This module does not import the plugin, so that a process using it pays only for what it
uses: ``bare.py llm -m bare-httpx2 PROMPT`` is ``llm`` with a bare model, the baseline of a
cold ``llm`` prompt.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
OnText = Callable[[str], None] | None


@dataclass(frozen=True)
class Box:
    """What a chat box needs to be talked to (a subset of the plugin's ``ChatBox``)."""

    generation: str
    page: str
    ajax_url: str
    nonce: str
    post_id: str
    bot_id: str
    kind: str = ""
    url: str = ""

    @classmethod
    def of(cls, box: Any) -> Box:
        return cls(**{name: getattr(box, name) for name in cls.__dataclass_fields__})

    def json(self) -> str:
        return json.dumps(asdict(self))


@dataclass(frozen=True)
class Call:
    """One request: method, URL, headers, form."""

    method: str
    url: str
    headers: dict[str, str]
    form: dict[str, str] | None = None


def origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def post_call(box: Box, form: dict[str, str]) -> Call:
    accept = "text/event-stream, application/json, */*" if box.generation == "1.x" else "*/*"
    headers = {"User-Agent": USER_AGENT, "Accept": accept, "Origin": origin(box.page),
               "Referer": box.page}  # fmt: skip
    return Call("POST", box.ajax_url, headers, form)


def cache_call(box: Box, message: str) -> Call:
    """2.x step 1: ``aipkit_cache_sse_message``."""
    return post_call(box, {
        "action": "aipkit_cache_sse_message",
        "message": message,
        "_ajax_nonce": box.nonce,
        "bot_id": box.bot_id,
        "user_client_message_id": f"aipkit-client-msg-{box.bot_id}-{time.time_ns()}",
    })  # fmt: skip


def stream_call(box: Box, key: str, session: str) -> Call:
    """2.x step 2: the ``aipkit_frontend_chat_stream`` GET."""
    query = {"action": "aipkit_frontend_chat_stream", "cache_key": key, "bot_id": box.bot_id,
             "session_id": session, "conversation_uuid": str(uuid.uuid4()),
             "post_id": box.post_id, "_ts": str(time.time_ns() // 10**6),
             "_ajax_nonce": box.nonce}  # fmt: skip
    headers = {"User-Agent": USER_AGENT, "Accept": "text/event-stream",
               "Cache-Control": "no-cache", "Referer": box.page}  # fmt: skip
    return Call("GET", f"{box.ajax_url}?{urllib.parse.urlencode(query)}", headers)


def call_1x(box: Box, message: str, client_id: str) -> Call:
    """The 1.x POST ``wpaicg_chat_shortcode_message``."""
    identity = f"custom_bot_{box.bot_id}" if box.bot_id not in ("", "0") else box.kind
    return post_call(box, {
        "_wpnonce": box.nonce, "post_id": box.post_id, "url": box.url,
        "action": "wpaicg_chat_shortcode_message", "message": message, "bot_id": box.bot_id,
        "chatbot_identity": identity, "wpaicg_chat_client_id": client_id,
        "wpaicg_chat_history": "[]", "chat_id": str(secrets.randbelow(100_000) + 1),
    })  # fmt: skip


# -- answers: lines in, text out ------------------------------------------------------------


class Frames2x:
    """2.x frames, line by line, across calls: ``data: {"delta": …}`` frames joined up to
    ``event: done``; every line after it read and dropped (the body is read to its end)."""

    def __init__(self) -> None:
        self.event = ""
        self.done = False

    def __call__(self, lines: Iterable[str], on_text: OnText = None) -> str:
        pieces = []
        for line in lines:
            if self.done:
                continue
            if not line:
                self.event = ""
            elif line.startswith("event: "):
                self.event = line[7:]
                self.done = self.event == "done"
            elif line.startswith("data: ") and not self.event:
                piece = json.loads(line[6:])["delta"]
                if piece:
                    if on_text is not None:
                        on_text(piece)
                    pieces.append(piece)
        return "".join(pieces)


def join_2x(lines: Iterable[str], on_text: OnText = None) -> str:
    """A whole 2.x answer."""
    return Frames2x()(lines, on_text)


def join_1x(lines: Iterable[str], on_text: OnText = None) -> str:
    """A 1.x answer: OpenAI chunks up to ``data: [DONE]``; every line read."""
    pieces, done = [], False
    for line in lines:
        if done or not line.startswith("data: "):
            continue
        if line == "data: [DONE]":
            done = True
            continue
        piece = json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
        if piece:
            if on_text is not None:
                on_text(piece)
            pieces.append(piece)
    return "".join(pieces)


# -- httpx2 ----------------------------------------------------------------------------------


def ask_httpx(client: Any, box: Box, message: str, session: str, on_text: OnText = None) -> str:
    """One prompt with an httpx2 client (reused or not: the caller decides)."""
    if box.generation == "1.x":
        call = call_1x(box, message, session[:10])
        with client.stream("POST", call.url, data=call.form, headers=call.headers) as response:
            return join_1x(response.iter_lines(), on_text)
    call = cache_call(box, message)
    key = client.post(call.url, data=call.form, headers=call.headers).json()["data"]["cache_key"]
    call = stream_call(box, key, session)
    with client.stream("GET", call.url, headers=call.headers) as response:
        return join_2x(response.iter_lines(), on_text)


def ask_httpx_new_connections(
    make_client: Callable[[], Any], box: Box, message: str, session: str, on_text: OnText = None
) -> str:
    """The same, with a new client, so a new connection, for every request."""
    if box.generation == "1.x":
        with make_client() as client:
            return ask_httpx(client, box, message, session, on_text)
    call = cache_call(box, message)
    with make_client() as client:
        key = client.post(call.url, data=call.form, headers=call.headers).json()["data"]
    call = stream_call(box, key["cache_key"], session)
    with make_client() as client, client.stream("GET", call.url, headers=call.headers) as r:
        return join_2x(r.iter_lines(), on_text)


# -- curl_cffi ---------------------------------------------------------------------------------

BROWSER_OWN = ("User-Agent",)  # an impersonated browser sends its own


class LineFeed:
    """Lines of a byte stream fed in pieces (for curl's content callback)."""

    def __init__(self, join: Callable[[Iterable[str], OnText], str], on_text: OnText) -> None:
        self.rest = b""
        self.join, self.on_text = join, on_text
        self.pieces: list[str] = []

    def feed(self, chunk: bytes) -> None:
        lines = (self.rest + chunk).split(b"\n")
        self.rest = lines.pop()
        text = self.join([line.rstrip(b"\r").decode() for line in lines], self.on_text)
        if text:
            self.pieces.append(text)

    def text(self) -> str:
        return "".join(self.pieces)


def curl_headers(call: Call) -> dict[str, str]:
    return {k: v for k, v in call.headers.items() if k not in BROWSER_OWN}


def ask_curl(session: Any, box: Box, message: str, client_session: str, on_text: OnText = None):
    """One prompt with a reused curl_cffi ``Session`` (its handle keeps the connection); the
    stream is read through a content callback, as it comes."""
    if box.generation == "1.x":
        call = call_1x(box, message, client_session[:10])
        lines = LineFeed(join_1x, on_text)
        session.post(call.url, data=call.form, headers=curl_headers(call),
                     content_callback=lines.feed)  # fmt: skip
        return lines.text()
    call = cache_call(box, message)
    reply = session.post(call.url, data=call.form, headers=curl_headers(call))
    call = stream_call(box, reply.json()["data"]["cache_key"], client_session)
    lines = LineFeed(Frames2x(), on_text)
    session.get(call.url, headers=curl_headers(call), content_callback=lines.feed)
    return lines.text()


async def ask_httpx_async(client: Any, box: Box, message: str, session: str) -> str:
    """``ask_httpx`` with an ``httpx2.AsyncClient`` (the lines parsed once the body is in)."""
    if box.generation == "1.x":
        call = call_1x(box, message, session[:10])
        async with client.stream("POST", call.url, data=call.form, headers=call.headers) as r:
            return join_1x([line async for line in r.aiter_lines()])
    call = cache_call(box, message)
    reply = await client.post(call.url, data=call.form, headers=call.headers)
    call = stream_call(box, reply.json()["data"]["cache_key"], session)
    async with client.stream("GET", call.url, headers=call.headers) as response:
        return join_2x([line async for line in response.aiter_lines()])


# -- a cold process: the baseline of one `llm` prompt ---------------------------------------


def run_llm_with_bare_model() -> None:
    """``llm`` itself, with one more model, ``bare-httpx2``: one prompt to the chat box in
    ``$BENCH_BOX`` made with a bare ``httpx2.Client()``, as a script would make it. Run
    with ``LLM_LOAD_PLUGINS=""``: the same command line path as the plugin's prompt, without
    the plugin."""
    import httpx2
    import llm
    from llm.cli import cli
    from llm.plugins import pm

    class BareModel(llm.Model):
        model_id = "bare-httpx2"
        can_stream = True

        def execute(self, prompt, stream, response, conversation=None):
            box = Box(**json.loads(os.environ["BENCH_BOX"]))
            with httpx2.Client() as client:
                yield ask_httpx(client, box, prompt.prompt, str(uuid.uuid4()))

    class Plugin:
        @llm.hookimpl
        def register_models(self, register: Callable) -> None:
            register(BareModel())

    pm.register(Plugin(), name="bench-bare")
    cli()


if __name__ == "__main__":
    if sys.argv[1:2] == ["llm"]:
        sys.argv = [sys.argv[0], *sys.argv[2:]]
        run_llm_with_bare_model()
    else:
        sys.exit("usage: BENCH_BOX=JSON LLM_LOAD_PLUGINS= bare.py llm -m bare-httpx2 PROMPT")
