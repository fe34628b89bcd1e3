"""A site made of canned replies, with no sockets: the plugin's core and both drivers run
for real, only the transport is replaced. For the captures of tests/samples and for
hand-made bodies (fuzzing, hostile input), fast enough to try thousands of cases.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

import llm_chatgptfree as plugin


@dataclass
class Canned:
    """One reply: status, headers, and its body in the network pieces it arrives in."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    pieces: int | None = None  # split the body into pieces of this size
    reason: str = "OK"
    problem: plugin.TransportProblem | None = None  # raised instead of a reply
    problem_after: int | None = None  # raised after this many pieces of the body

    def chunks(self) -> list[bytes]:
        if not self.pieces:
            return [self.body] if self.body else []
        return [self.body[i : i + self.pieces] for i in range(0, len(self.body), self.pieces)]


def read_capture(path: Path) -> Canned:
    """A captured ``.response.http``: status line, headers, body (chunking undone)."""
    raw = path.read_bytes()
    head, separator, body = raw.partition(b"\r\n\r\n")
    if not separator:
        head, _, body = raw.partition(b"\n\n")
    lines = head.decode().splitlines()
    _, code, reason = (lines[0].split(" ", 2) + [""])[:3]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    headers.pop("transfer-encoding", None)
    headers.pop("content-length", None)
    return Canned(int(code), headers, body, reason=reason)


def json_reply(value: object, status: int = 200) -> Canned:
    body = json.dumps(value, separators=(",", ":")).replace("/", "\\/").encode()
    return Canned(status, {"content-type": "application/json; charset=UTF-8"}, body)


def sse_reply(body: bytes | str, pieces: int | None = None) -> Canned:
    body = body.encode() if isinstance(body, str) else body
    return Canned(200, {"content-type": "text/event-stream; charset=utf-8"}, body, pieces)


def html_reply(body: str, status: int = 200, **headers: str) -> Canned:
    return Canned(status, {"content-type": "text/html; charset=UTF-8", **headers}, body.encode())


@dataclass
class Seen:
    """A request as the canned site saw it."""

    method: str
    url: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    form: dict[str, str]

    @property
    def action(self) -> str:
        return self.form.get("action") or self.query.get("action", "")


class CannedBody:
    """A canned reply's body, as a transport hands it to the driver."""

    def __init__(self, canned: Canned) -> None:
        self.canned = canned
        self.closed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        for number, chunk in enumerate(self.canned.chunks()):
            if self.canned.problem_after is not None and number >= self.canned.problem_after:
                raise self.canned.problem
            yield chunk
        if self.canned.problem_after is not None and self.canned.problem is not None:
            raise self.canned.problem

    async def aclose(self) -> None:
        self.closed = True


class CannedSite:
    """Answers every request with ``route(seen)``; records what it was asked."""

    def __init__(self, route: Callable[[Seen], Canned]) -> None:
        self.route = route
        self.seen: list[Seen] = []

    def answer(self, request: plugin.Request) -> tuple[plugin.Reply, CannedBody]:
        parts = urlsplit(request.url)
        seen = Seen(
            request.method,
            request.url,
            parts.path,
            dict(parse_qsl(parts.query, keep_blank_values=True)),
            {k.lower(): v for k, v in request.headers.items()},
            dict(request.form or {}),
        )
        self.seen.append(seen)
        canned = self.route(seen)
        if canned.problem is not None and canned.problem_after is None:
            raise canned.problem
        set_cookies = [v for k, v in canned.headers.items() if k == "set-cookie"]
        reply = plugin.Reply(
            canned.status,
            canned.reason,
            {k: v for k, v in canned.headers.items() if k != "set-cookie"},
            request.url,
            set_cookies,
        )
        return reply, CannedBody(canned)

    # the transport interface, and a pool of one
    def get(self, settings: plugin.TransportSettings, url: str) -> CannedSite:
        return self

    async def send(self, request: plugin.Request, idle: float) -> tuple[plugin.Reply, CannedBody]:
        return self.answer(request)

    def actions(self) -> list[str]:
        return [s.action or f"{s.method} {s.path}" for s in self.seen]

    def install(self, monkeypatch: pytest.MonkeyPatch) -> CannedSite:
        """Make every prompt of this test go to this site, sync and async."""
        site = self

        async def loop_pool() -> CannedSite:
            return site

        monkeypatch.setattr(plugin, "loop_pool", loop_pool)
        return self
