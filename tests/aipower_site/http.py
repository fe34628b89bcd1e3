"""The HTTP side: requests as recorded, the ``Reply`` the protocol code builds, and the
threaded HTTP/1.1 keep-alive server whose handler only writes replies.

A ``Reply`` says everything about an answer: status, headers (in order, complete but for
``Date`` and ``Server``), the body as pieces (``bytes``, or ``Pause`` markers), whether it
is chunked, how it is cut into network pieces, and how the connection ends. Every wait is
an ``Event`` wait that ends when the site stops; every loop is bounded.
"""

from __future__ import annotations

import contextlib
import re
import select
import selectors
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

SERVER = "Apache/2.4.71 (Debian)"
MAX_BODY = 64 * 1024 * 1024
End = Literal["done", "close", "reset", "hang"]


@dataclass
class Recorded:
    """One request as the site saw it (header names in lower case)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    form: dict[str, str]
    body: bytes
    time: float = field(default_factory=time.time)
    proxied: bool = False  # sent to the site as to a proxy (absolute-form target)
    connection_id: int = 0  # which TCP connection carried it (1, 2, … in accept order)

    @property
    def fields(self) -> dict[str, str]:
        """PHP's ``$_REQUEST``: query and POST fields, POST winning."""
        return {**self.query, **self.form}


def parse_form(body: bytes, content_type: str, errors: str = "replace") -> dict[str, str]:
    """POST fields of a urlencoded or multipart body (``{}`` for any other body)."""
    if content_type.startswith("application/x-www-form-urlencoded"):
        text = body.decode("utf-8", errors)
        return dict(parse_qsl(text, keep_blank_values=True, errors=errors))
    if content_type.startswith("multipart/form-data"):
        found = re.search(r'boundary="?([^";]+)"?', content_type)
        if not found:
            return {}
        fields = {}
        for part in body.split(b"--" + found.group(1).encode())[1:]:
            if part.startswith(b"--"):
                break
            head, _, content = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
            name = re.search(rb'\bname="([^"]*)"', head)
            if name and b"filename=" not in head:
                value = content.removesuffix(b"\r\n").decode("utf-8", errors)
                fields[name.group(1).decode("utf-8", "replace")] = value
        return fields
    return {}


@dataclass(frozen=True)
class Pause:
    """A silence inside a body (ends early when the site stops)."""

    seconds: float


Piece = bytes | Pause


@dataclass
class Reply:
    """An answer, complete: the handler writes it and decides nothing."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes | Iterable[Piece] = b""
    chunked: bool = False  # each piece (after ``piece_size``) is one HTTP chunk
    piece_size: int | None = None  # cut the body into network pieces of this size
    piece_delay: float = 0.0  # silence after every piece
    drip: float | None = None  # write every byte alone, this long apart, headers included
    end: End = "done"  # done; close; reset (RST); hang (keep open, body unfinished)
    hang_seconds: float = 0.0  # how long "hang" keeps the connection at most
    cut_at: int | None = None  # for streams: the piece index after the second text frame
    reason: str | None = None
    head: bool = True  # False: not even a status line (a reset or a silence before any byte)

    def pieces(self) -> list[Piece] | Iterable[Piece]:
        return [self.body] if isinstance(self.body, bytes) else self.body

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def without(self, *names: str) -> list[tuple[str, str]]:
        lowered = {name.lower() for name in names}
        return [(k, v) for k, v in self.headers if k.lower() not in lowered]


def resized(pieces: Iterable[Piece], size: int | None) -> Iterator[Piece]:
    """The same bytes in pieces of ``size`` (a ``Pause`` flushes what is pending first)."""
    if size is None:
        yield from (piece for piece in pieces if piece != b"")
        return
    pending = b""
    for piece in pieces:
        if isinstance(piece, Pause):
            if pending:
                yield pending
                pending = b""
            yield piece
            continue
        pending += piece
        while len(pending) >= size:
            yield pending[:size]
            pending = pending[size:]
    if pending:
        yield pending


class TooLarge(Exception):
    """A request body over ``MAX_BODY``."""


class Stopped(Exception):
    """The site is stopping: drop whatever is being written."""


class SiteServer(ThreadingHTTPServer):
    """A threaded HTTP/1.1 server on 127.0.0.1 that counts and can close its connections."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        port: int,
        route: Callable[[Recorded, SiteHandler], Reply | None],
        stopping: threading.Event,
        tls: ssl.SSLContext | None = None,
        name: str = "aipower-site",
    ) -> None:
        self.route = route
        self.stopping = stopping
        self.tls = tls
        self.name = name
        self.connections = 0
        self.errors: list[BaseException] = []  # what went wrong inside the site itself
        self._lock = threading.Lock()
        self._open: dict[socket.socket, int] = {}
        self._connection_threads: list[threading.Thread] = []
        self._wake, self._waker = socket.socketpair()  # ``shutdown`` wakes the loop at once
        self._closing = threading.Event()
        self._served = threading.Event()
        self._served.set()
        super().__init__(("127.0.0.1", port), SiteHandler)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """As socketserver's loop, but without its polling: ``shutdown`` wakes it at once
        (a poll every 10 ms made each site's stop wait about 10 ms per server)."""
        self._served.clear()
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self, selectors.EVENT_READ)
                selector.register(self._wake, selectors.EVENT_READ)
                while not self._closing.is_set():
                    for key, _ in selector.select():
                        if key.fileobj is self and not self._closing.is_set():
                            self._handle_request_noblock()
                    self.service_actions()
        finally:
            self._served.set()

    def shutdown(self) -> None:
        """Stop the loop and wait until it has stopped (as socketserver's)."""
        self._closing.set()
        with contextlib.suppress(OSError):
            self._waker.send(b"x")
        self._served.wait()

    def server_close(self) -> None:
        super().server_close()
        self._wake.close()
        self._waker.close()

    def get_request(self) -> tuple[socket.socket, object]:
        sock, address = self.socket.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def process_request(self, request, client_address) -> None:  # type: ignore[override]
        with self._lock:
            self.connections += 1
            self._open[request] = self.connections
            self._connection_threads = [
                thread for thread in self._connection_threads if thread.is_alive()
            ]
            thread = threading.Thread(
                target=self.process_request_thread,
                args=(request, client_address),
                name=f"{self.name}-connection",
                daemon=True,
            )
            self._connection_threads.append(thread)
        thread.start()

    def connection_id(self, sock: socket.socket) -> int:
        with self._lock:
            return self._open.get(sock, 0)

    def shutdown_request(self, request) -> None:  # type: ignore[override]
        with self._lock:
            self._open.pop(request, None)
        super().shutdown_request(request)

    def close_everything(self) -> None:
        """Stop accepting, wake every connection's thread and wait for them."""
        self.shutdown()
        with self._lock:
            sockets = list(self._open)
            threads = list(self._connection_threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(timeout=5)
        self.server_close()

    def handle_error(self, request: object, client_address: object) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, (OSError, Stopped)) and error is not None:
            self.errors.append(error)
            super().handle_error(request, client_address)


class SiteHandler(BaseHTTPRequestHandler):
    """Reads a request, asks the server's route for a ``Reply`` and writes it."""

    server: SiteServer
    protocol_version = "HTTP/1.1"
    server_version = "Apache/2.4.71"
    sys_version = "(Debian)"
    timeout = 60  # an idle keep-alive connection, or a client that stopped reading

    def setup(self) -> None:
        super().setup()
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
            self.request.settimeout(self.timeout)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = do_GET

    def _dispatch(self) -> None:
        try:
            request = self._read_request()
        except TooLarge:
            closing = [("Content-Length", "0"), ("Connection", "close")]
            return self.play(Reply(413, closing))
        reply = self.server.route(request, self)
        if reply is not None:
            self.play(reply)

    def _read_request(self) -> Recorded:
        target = urlsplit(self.path)
        body = self._read_body()
        return Recorded(
            method=self.command,
            path=target.path,
            query=dict(parse_qsl(target.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
            form=parse_form(body, self.headers.get("Content-Type", "")),
            body=body,
            proxied=bool(target.scheme),
            connection_id=self.server.connection_id(self.request),
        )

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = b""
            while len(body) <= MAX_BODY:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
            raise TooLarge
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise TooLarge
        return self.rfile.read(length) if length else b""

    # -- writing a reply -------------------------------------------------------------

    def play(self, reply: Reply) -> None:
        """Write ``reply`` exactly as it says; any failure of the client ends it quietly."""
        send = self._dripper(reply.drip) if reply.drip else self._sendall
        if (reply.header("Connection") or "").lower() == "close":
            self.close_connection = True
        try:
            if reply.head:
                send(self._head(reply))
            for piece in resized(reply.pieces(), reply.piece_size):
                if isinstance(piece, Pause):
                    self.pause(piece.seconds)
                    continue
                send(b"%x\r\n%s\r\n" % (len(piece), piece) if reply.chunked else piece)
                if reply.piece_delay:
                    self.pause(reply.piece_delay)
            if reply.end == "done" and reply.chunked:
                send(b"0\r\n\r\n")
            elif reply.end == "reset":
                self.reset()
            elif reply.end == "hang":
                self.linger(reply.hang_seconds)
                self.close_connection = True
            elif reply.end == "close":
                self.close_connection = True
        except (OSError, Stopped):
            self.close_connection = True

    def _head(self, reply: Reply) -> bytes:
        reason = reply.reason or HTTPStatus(reply.status).phrase
        server = [] if reply.header("Server") else [f"Server: {SERVER}"]
        lines = [
            f"HTTP/1.1 {reply.status} {reason}",
            f"Date: {formatdate(usegmt=True)}",
            *server,
            *(f"{name}: {value}" for name, value in reply.headers),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _sendall(self, data: bytes) -> None:
        self.wfile.write(data)

    def _dripper(self, interval: float) -> Callable[[bytes], None]:
        def send(data: bytes) -> None:
            for index in range(len(data)):
                self.wfile.write(data[index : index + 1])
                self.pause(interval)

        return send

    def pause(self, seconds: float) -> None:
        if seconds > 0 and self.server.stopping.wait(seconds):
            raise Stopped

    def linger(self, seconds: float) -> None:
        """Keep the connection open up to ``seconds``, until the client goes or the site stops."""
        deadline = time.monotonic() + seconds
        plain = not isinstance(self.request, ssl.SSLSocket)
        while (left := deadline - time.monotonic()) > 0:
            if self.server.stopping.is_set():
                raise Stopped
            if plain:
                readable, _, _ = select.select([self.request], [], [], min(left, 0.05))
                if readable and not self.request.recv(1, socket.MSG_PEEK):
                    return  # the client hung up
            else:
                self.pause(min(left, 0.05))

    def reset(self) -> None:
        """Close the connection abruptly (RST), as a crashed server or proxy would."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.request.close()


@contextlib.contextmanager
def unresponsive_port() -> Iterator[str]:
    """A URL on 127.0.0.1 whose TCP connect never completes: its backlog is full."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):  # fill the accept queue; later SYNs are dropped
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError, OSError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def captured_reply(capture: Path) -> Reply:
    """A captured response (``.response.http``): its status, headers and body."""
    raw = capture.read_bytes()
    head, separator, body = raw.partition(b"\r\n\r\n")
    if not separator:
        head, _, body = raw.partition(b"\n\n")
    lines = head.decode().splitlines()
    _, code, reason = lines[0].split(" ", 2)
    headers, chunked = [], False
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        if name.lower() in ("date", "server", "content-length", "connection"):
            continue
        chunked |= name.lower() == "transfer-encoding"
        headers.append((name, value))
    if not chunked:
        headers.append(("Content-Length", str(len(body))))
    return Reply(int(code), headers, body, chunked=chunked, reason=reason)
