"""Faults that are nobody's protocol: what a proxy, a CDN, the web server or a hostile site
does to a request (``TRANSPORT``: a reply instead of WordPress's) or to the reply the site
built (``MODIFIERS``). Both generations share them; each fault is played here only."""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from http import HTTPStatus
from typing import TYPE_CHECKING

from .faults import Fault
from .http import Pause, Recorded, Reply
from .wp import HTML, JSON, ajax_reply

if TYPE_CHECKING:
    from . import AIPowerSite

CLOUDFLARE_PAGE = (
    '<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title></head>'
    '<body><div id="cf-please-wait">Checking your browser before accessing.</div>'
    "<script>window._cf_chl_opt={cType: 'managed'};</script></body></html>"
)
WP_CRITICAL_PAGE = (
    "<!DOCTYPE html><html><head><title>WordPress &rsaquo; Error</title></head>"
    "<body><p>There has been a critical error on this website.</p></body></html>"
)
BOMB_MEGABYTES = 1024  # inflates to 1 GiB
ENDLESS_BYTES = 300 * 1024 * 1024
DEEP = 100_000
BOM = b"\xef\xbb\xbf"
REDIRECTED = "aipower_redirected"


def error_page(status: int, reason: str) -> str:
    return (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )


def page_reply(status: int, body: bytes, extra: list[tuple[str, str]] = ()) -> Reply:
    """A page as WordPress serves it here: only length and type (plus ``extra``)."""
    headers = [*extra, ("Content-Length", str(len(body))), ("Content-Type", HTML)]
    return Reply(status, headers, body)


# -- transport: a reply instead of the site's --------------------------------------------


def cloudflare(status: int) -> Callable[[AIPowerSite, Recorded], Reply]:
    def play(site: AIPowerSite, request: Recorded) -> Reply:
        extra = [("cf-mitigated", "challenge"), ("Server", "cloudflare")]
        return ajax_reply(status, CLOUDFLARE_PAGE.encode(), HTML, close=False, headers=extra)

    return play


def nginx(status: int) -> Callable[[AIPowerSite, Recorded], Reply]:
    def play(site: AIPowerSite, request: Recorded) -> Reply:
        page = error_page(status, HTTPStatus(status).phrase).encode()
        return ajax_reply(status, page, "text/html", close=False)

    return play


def redirect(foreign: bool) -> Callable[[AIPowerSite, Recorded], Reply | None]:
    def play(site: AIPowerSite, request: Recorded) -> Reply | None:
        if REDIRECTED in request.query:
            return None  # already redirected: the page itself
        origin = site.foreign_url if foreign else site.base_url
        location = f"{origin}{request.path}?{REDIRECTED}=1"
        return page_reply(302, b"", [("Location", location)])

    return play


TRANSPORT: dict[Fault, Callable[[AIPowerSite, Recorded], Reply | None]] = {
    Fault.CLOUDFLARE_403: cloudflare(403),
    Fault.CLOUDFLARE_503: cloudflare(503),
    Fault.HTTP_500: nginx(500),
    Fault.HTTP_502: nginx(502),
    Fault.HTTP_503: nginx(503),
    Fault.HTTP_504: nginx(504),
    Fault.WP_CRITICAL: lambda site, request: ajax_reply(
        500, WP_CRITICAL_PAGE.encode(), HTML, close=False
    ),
    Fault.RESET: lambda site, request: Reply(0, [], head=False, end="reset"),
    Fault.SLOW: lambda site, request: Reply(
        0, [], [Pause(site.slow_seconds)], head=False, end="reset"
    ),
    Fault.ZERO_200: lambda site, request: ajax_reply(200, b"0", HTML),
    Fault.ECHO_COOKIE: lambda site, request: ajax_reply(
        500,
        f"Bad request from a client with cookies {request.headers.get('cookie')}".encode(),
        "text/plain",
        close=False,
    ),
    Fault.DEEP_JSON: lambda site, request: ajax_reply(
        200, b'{"success":true,"data":' + b"[" * DEEP + b"]" * DEEP + b"}", JSON
    ),
    Fault.REDIRECT_SAME: redirect(foreign=False),
    Fault.REDIRECT_FOREIGN: redirect(foreign=True),
    Fault.EXPIRED_LINK_403: lambda site, request: page_reply(
        403, b"The link you followed has expired."
    ),
    Fault.MINUS_ONE_403: lambda site, request: page_reply(403, b"-1"),
}


# -- modifiers: the site's reply, altered -------------------------------------------------


def whole(reply: Reply) -> bytes:
    return b"".join(piece for piece in reply.pieces() if isinstance(piece, bytes))


def with_body(reply: Reply, body: bytes | list, length: int | None = None) -> Reply:
    """``reply`` with another body; a Content-Length reply gets the new length."""
    if reply.chunked:
        return replace(reply, body=body)
    size = len(body) if isinstance(body, bytes) else sum(map(len, body))
    headers = [
        (name, str(size if length is None else length) if name == "Content-Length" else value)
        for name, value in reply.headers
    ]
    return replace(reply, body=body, headers=headers)


def sized_headers(reply: Reply, length: int, *extra: tuple[str, str]) -> list[tuple[str, str]]:
    """The headers of ``reply`` for a body of ``length`` bytes sent with a Content-Length."""
    kept = reply.without("Content-Length", "Transfer-Encoding", "Content-Type")
    content_type = reply.header("Content-Type") or HTML
    return [*kept, *extra, ("Content-Length", str(length)), ("Content-Type", content_type)]


def as_chunked(reply: Reply, body) -> Reply:
    """``reply`` with another body, sent chunked (its Content-Length becomes chunking)."""
    headers = [("Transfer-Encoding", "chunked") if name == "Content-Length" else (name, value)
               for name, value in reply.headers]  # fmt: skip
    return replace(reply, headers=headers, body=body, chunked=True, cut_at=None)


def truncated(reply: Reply, silence: float) -> Reply:
    """The stream up to its second text frame, a silence, then a reset (cut / stall)."""
    if reply.cut_at is None:
        return reply
    pieces = list(reply.pieces())[: reply.cut_at]
    return replace(reply, body=[*pieces, Pause(silence)], end="reset")


def bom(reply: Reply, site: AIPowerSite) -> Reply:
    if reply.chunked:
        return replace(reply, body=[BOM, *reply.pieces()])
    return with_body(reply, BOM + whole(reply))


def cr_only(reply: Reply, site: AIPowerSite) -> Reply:
    pieces = [p.replace(b"\n", b"\r") if isinstance(p, bytes) else p for p in reply.pieces()]
    return replace(reply, body=pieces) if reply.chunked else with_body(reply, pieces[0])


@functools.cache
def zeros_block() -> bytes:
    """Deflate data for 1 MiB of zeros that decodes alike wherever it sits in a stream."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)


@functools.cache
def zeros_crc(megabytes: int) -> int:
    crc, block = 0, bytes(1 << 20)
    for _ in range(megabytes):
        crc = zlib.crc32(block, crc)
    return crc


def gzip_bomb(reply: Reply, site: AIPowerSite) -> Reply:
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"
    final = zlib.compressobj(9, zlib.DEFLATED, -15).flush()  # an empty last block
    size = len(header) + len(zeros_block()) * BOMB_MEGABYTES + len(final) + 8

    def body() -> Iterator[bytes]:
        yield header
        for _ in range(BOMB_MEGABYTES):
            yield zeros_block()
        inflated = (BOMB_MEGABYTES << 20) & 0xFFFFFFFF
        yield final + struct.pack("<II", zeros_crc(BOMB_MEGABYTES), inflated)

    headers = sized_headers(reply, size, ("Content-Encoding", "gzip"))
    return replace(reply, headers=headers, body=body(), chunked=False, piece_size=None)


def endless_line(reply: Reply, site: AIPowerSite) -> Reply:
    def body() -> Iterator[bytes]:
        yield b'data: {"delta":"'
        piece = b"x" * 65536
        for _ in range(ENDLESS_BYTES // len(piece)):
            yield piece

    return as_chunked(reply, body())


def overstated_length(reply: Reply, site: AIPowerSite) -> Reply:
    body = whole(reply)
    headers = sized_headers(reply, len(body) + 1000)
    return replace(
        reply, headers=headers, body=body, chunked=False, end="hang", hang_seconds=site.slow_seconds
    )


MODIFIERS: dict[Fault, Callable[[Reply, AIPowerSite], Reply]] = {
    Fault.FRAGMENTED: lambda reply, site: replace(reply, piece_size=7),
    Fault.BOM: bom,
    Fault.CR_ONLY: cr_only,
    Fault.DRIP: lambda reply, site: replace(reply, drip=site.drip_interval),
    Fault.GZIP_BOMB: gzip_bomb,
    Fault.ENDLESS_LINE: endless_line,
    Fault.OVERSTATED_LENGTH: overstated_length,
    Fault.CUT: lambda reply, site: truncated(reply, 0.2),
    Fault.STALL: lambda reply, site: truncated(reply, site.slow_seconds),
    Fault.DONE_OPEN: lambda reply, site: (
        replace(reply, end="hang", hang_seconds=site.slow_seconds) if reply.chunked else reply
    ),
}
