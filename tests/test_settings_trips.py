"""Settings a demanding user trips on (issue 17, items 3, 6, 7 and 14): proxy URLs and
SOCKS, headers that describe one browser, cookies never sent in clear, and the
certificates of SSL_CERT_FILE and SSL_CERT_DIR.

Everything runs through the real ``llm`` command against the local AI Power site on
127.0.0.1, through both transports where they differ. SOCKS is tested end to end through
a tiny SOCKS5 server written here (stdlib, 127.0.0.1 only).
"""

from __future__ import annotations

import select
import socket
import struct
import sys
import threading
from collections.abc import Iterator

import llm
import pytest

import llm_chatgptfree
from tests.conftest import run, sync_model

ANSWER = "Hello from the fake upstream. You said: "
SECRET = "s3cr3tPW"  # a proxy password, and the marks that must never be shown
MARKS = ("s3cr", "3tPW", "cr3t")


def prompt(url: str, *options: str, text: str = "Hi"):
    return run("-m", "chatgptfree", "-o", "site", url, *options, text)


def no_traceback(output: str) -> str:
    assert output.startswith("Error: "), output
    assert "Traceback" not in output, output
    return output


def one_sentence(output: str) -> str:
    """The error line of a failed command: one line, no traceback."""
    assert no_traceback(output).count("\n") == 1, output
    return output


def shows_no_secret(output: str) -> None:
    assert not any(mark in output for mark in MARKS), output


# -- a SOCKS5 proxy ------------------------------------------------------------------------


def receive_exactly(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        piece = connection.recv(size - len(data))
        if not piece:
            raise ConnectionError("the client went away")
        data += piece
    return data


class Socks5Proxy:
    """A SOCKS5 proxy on 127.0.0.1 (RFC 1928; no authentication or RFC 1929 user and
    password): it relays CONNECTs to 127.0.0.1 only, counts the connections it accepted
    and keeps the credentials and targets it was given. Every wait is bounded."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.credentials: list[tuple[str, str]] = []
        self.targets: list[tuple[int, str, int]] = []  # address type, host, port
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]

    def url(self, scheme: str = "socks5", userinfo: str = "") -> str:
        return f"{scheme}://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}"

    def __enter__(self) -> Socks5Proxy:
        self._threads[0].start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with self._lock:
            for sock in self._sockets:
                sock.close()
        for thread in list(self._threads):
            thread.join(timeout=5)
        self.listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._sockets.append(client)
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(10)
        try:
            upstream = self._handshake(client)
        except (OSError, ConnectionError, struct.error):
            client.close()
            return
        if upstream is not None:
            self._relay(client, upstream)

    def _handshake(self, client: socket.socket) -> socket.socket | None:
        version, count = receive_exactly(client, 2)
        methods = receive_exactly(client, count)
        if version != 5:
            return None
        if 2 in methods:
            client.sendall(b"\x05\x02")
            receive_exactly(client, 1)
            user = receive_exactly(client, receive_exactly(client, 1)[0]).decode()
            password = receive_exactly(client, receive_exactly(client, 1)[0]).decode()
            self.credentials.append((user, password))
            client.sendall(b"\x01\x00")
        else:
            client.sendall(b"\x05\x00")
        _, command, _, kind = receive_exactly(client, 4)
        if kind == 1:
            host = socket.inet_ntoa(receive_exactly(client, 4))
        elif kind == 3:
            host = receive_exactly(client, receive_exactly(client, 1)[0]).decode()
        else:
            host = socket.inet_ntop(socket.AF_INET6, receive_exactly(client, 16))
        (port,) = struct.unpack("!H", receive_exactly(client, 2))
        self.targets.append((kind, host, port))
        if command != 1 or host not in ("127.0.0.1", "localhost"):
            client.sendall(b"\x05\x02\x00\x01\x00\x00\x00\x00\x00\x00")  # not allowed
            return None
        upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
        with self._lock:
            self._sockets.append(upstream)
        client.sendall(b"\x05\x00\x00\x01\x7f\x00\x00\x01" + struct.pack("!H", port))
        return upstream

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        pair = {client: upstream, upstream: client}
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select(list(pair), [], [], 0.2)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    pair[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            client.close()
            upstream.close()


@pytest.fixture
def socks() -> Iterator[Socks5Proxy]:
    with Socks5Proxy() as proxy:
        yield proxy


# -- 3. proxies ------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
@pytest.mark.parametrize("way", ["option", "CHATGPTFREE_PROXY", "ALL_PROXY"])
def test_socks_works_from_every_source(site, socks, scheme, way, monkeypatch):
    """A SOCKS proxy with a password (an escaped ``#`` in it) carries the prompt, from the
    option, the plugin's variable or the standard one, through either transport."""
    proxy = socks.url(scheme, "alice:s3cr%23tPW")
    if way == "option":
        result = prompt(site.chat_url, "-o", "proxy", proxy)
    else:
        monkeypatch.setenv(way, proxy)
        result = prompt(site.chat_url)
    assert (result.exit_code, result.output) == (0, ANSWER + "Hi\n")
    assert socks.connections >= 1
    assert set(socks.credentials) == {("alice", "s3cr#tPW")}
    assert {(host, port) for _, host, port in socks.targets} == {("127.0.0.1", site.port)}
    assert site.requests and not any(request.proxied for request in site.requests)


@pytest.fixture
def no_socksio(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if socksio were not installed: importing it fails."""
    monkeypatch.setitem(sys.modules, "socksio", None)


@pytest.mark.parametrize("way", ["option", "CHATGPTFREE_PROXY"])
def test_socks_without_socksio(site, socks, transport, way, no_socksio, monkeypatch):
    """curl speaks SOCKS itself, so the option is taken as the variable is; httpx2 needs
    socksio, and says so in one sentence."""
    proxy = socks.url("socks5", f"alice:{SECRET}")
    if way == "option":
        result = prompt(site.chat_url, "-o", "proxy", proxy)
    else:
        monkeypatch.setenv(way, proxy)
        result = prompt(site.chat_url)
    if transport == "curl":
        assert (result.exit_code, result.output) == (0, ANSWER + "Hi\n")
        assert set(socks.credentials) == {("alice", SECRET)}
        return
    assert result.exit_code == 1
    one_sentence(result.output)
    assert "needs the socksio package: llm install socksio" in result.output
    shows_no_secret(result.output)
    assert socks.connections == 0 and site.requests == []


BAD_PROXIES = {
    "hash": f"http://alice:{SECRET[:4]}#{SECRET[4:]}@127.0.0.1:9",
    "slash": f"http://alice:{SECRET[:4]}/{SECRET[4:]}@127.0.0.1:9",
    "question": f"http://alice:{SECRET[:4]}?{SECRET[4:]}@127.0.0.1:9",
    "bracket": f"http://alice:{SECRET[:4]}[{SECRET[4:]}@127.0.0.1:9",
    "no-scheme": f"alice:{SECRET}@127.0.0.1:9",
    "ftp": f"ftp://alice:{SECRET}@127.0.0.1:9",
    "bad-port": f"http://alice:{SECRET}@127.0.0.1:99999",
}


@pytest.mark.parametrize("name", list(BAD_PROXIES))
@pytest.mark.parametrize("way", ["CHATGPTFREE_PROXY", "HTTPS_PROXY", "ALL_PROXY"])
def test_a_bad_proxy_url_is_one_sentence_without_its_password(site, name, way, monkeypatch):
    """From the environment: one ``Error:`` line for a prompt and for probe, the
    password blanked, nothing sent anywhere; and an ``llm.ModelError`` in Python."""
    monkeypatch.setenv(way, BAD_PROXIES[name])
    result = prompt(site.chat_url)
    assert result.exit_code == 1
    one_sentence(result.output)
    shows_no_secret(result.output)
    assert (f"${way}:" if way != "CHATGPTFREE_PROXY" else "$CHATGPTFREE_PROXY:") in result.output
    probed = run("chatgptfree", "probe", site.chat_url)
    assert probed.exit_code == 1
    one_sentence(probed.output)
    shows_no_secret(probed.output)
    with pytest.raises(llm.ModelError) as raised:
        sync_model().prompt("Hi", site=site.chat_url).text()
    shows_no_secret(str(raised.value))
    assert site.requests == []


@pytest.mark.parametrize("name", list(BAD_PROXIES))
def test_a_bad_proxy_option_is_refused_without_its_password(site, name):
    result = prompt(site.chat_url, "-o", "proxy", BAD_PROXIES[name])
    assert result.exit_code == 1
    no_traceback(result.output)
    assert "proxy" in result.output
    shows_no_secret(result.output)
    with pytest.raises(ValueError) as raised:  # pydantic's error, input hidden
        sync_model().prompt("Hi", site=site.chat_url, proxy=BAD_PROXIES[name]).text()
    shows_no_secret(str(raised.value))
    assert site.requests == []


def test_socks4_needs_curl(site, transport, monkeypatch):
    """httpx2 does not speak socks4://: one sentence; curl is handed it."""
    monkeypatch.setenv("ALL_PROXY", f"socks4://alice:{SECRET}@127.0.0.1:9")
    result = prompt(site.chat_url)
    assert result.exit_code == 1
    one_sentence(result.output)
    shows_no_secret(result.output)
    if transport == "httpx":
        assert "a socks4:// proxy needs browser impersonation" in result.output
    else:
        assert result.output.startswith("Error: Could not reach the proxy 127.0.0.1:9")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://u:pa#ss@h:1", "http://u:***@h:1"),
        ("http://u:p/a?s#s[@h:1/x", "http://u:***@h:1/x"),
        ("u:pass@h:1", "u:***@h:1"),
        ("socks5://u:a:b@c@h", "socks5://u:***@h"),
        ("http://user@h:1", "http://user@h:1"),
        ("http://h:1", "http://h:1"),
    ],
)
def test_blank_proxy_password(url, shown):
    assert llm_chatgptfree.blank_proxy_password(url) == shown
