"""Settings a demanding user trips on (issue 17, items 3, 6, 7 and 14): proxy URLs and
SOCKS, headers that describe one browser, cookies never sent in clear, and the
certificates of SSL_CERT_FILE and SSL_CERT_DIR.

Everything runs through the real ``llm`` command against the local AI Power site on
127.0.0.1, through both transports where they differ. SOCKS is tested end to end through
a tiny SOCKS5 server written here (stdlib, 127.0.0.1 only).
"""

from __future__ import annotations

import base64
import contextlib
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import llm
import pytest

import llm_chatgptfree
from tests.aipower_site import AIPowerSite
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
        with contextlib.suppress(OSError):  # wakes the accept at once (Linux), not at 0.2 s
            self.listener.shutdown(socket.SHUT_RDWR)
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):  # wakes its relay's select at once
                    sock.shutdown(socket.SHUT_RDWR)
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


class ConnectProxy(Socks5Proxy):
    """An HTTP proxy on 127.0.0.1 that only tunnels (CONNECT, to 127.0.0.1 only): it keeps
    the credentials of each ``Proxy-Authorization`` and the targets, and answers 407 to a
    CONNECT whose credentials are not ``password``'s."""

    password = SECRET

    def _handshake(self, client: socket.socket) -> socket.socket | None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += receive_exactly(client, 1)
        line, *fields = head.decode("latin-1").split("\r\n")
        headers = dict(f.split(": ", 1) for f in fields if ": " in f)
        method, target, _ = line.split(" ")
        host, _, port = target.rpartition(":")
        self.targets.append((0, host, int(port)))
        token = headers.get("Proxy-Authorization", "").removeprefix("Basic ")
        user, _, password = base64.b64decode(token).decode().partition(":")
        self.credentials.append((user, password))
        if method != "CONNECT" or host != "127.0.0.1" or password != self.password:
            client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
            return None
        upstream = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
        with self._lock:
            self._sockets.append(upstream)
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        return upstream


@pytest.mark.parametrize("password", [SECRET, "wrong"])
def test_an_https_site_through_an_http_proxy_is_tunnelled(tls_site, password, monkeypatch):
    """CONNECT, with the password to the proxy alone; a refused CONNECT is one sentence."""
    monkeypatch.setenv("SSL_CERT_FILE", tls_site.ca_path)
    with ConnectProxy() as proxy:
        result = prompt(
            tls_site.chat_url, "-o", "proxy", f"http://alice:{password}@127.0.0.1:{proxy.port}"
        )
        assert set(proxy.credentials) == {("alice", password)}
        assert {(host, port) for _, host, port in proxy.targets} == {("127.0.0.1", tls_site.port)}
    if password == SECRET:
        assert (result.exit_code, result.output) == (0, ANSWER + "Hi\n")
        assert tls_site.requests and not any(r.proxied for r in tls_site.requests)
        assert not any("proxy-authorization" in r.headers for r in tls_site.requests)
        return
    one_sentence(result.output)
    assert "407" in result.output and tls_site.requests == []


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


# -- 6. one browser: User-Agent, client hints and TLS profile -------------------------------

CHROME_142_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/142.0.0.0 Safari/537.36"
)
EDGE_131_MACOS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0"
)
CHROME_136_ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/136.0.0.0 Mobile Safari/537.36"
)
OPERA_115_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36 OPR/115.0.0.0"
)
FIREFOX_135_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:135.0) Gecko/20100101 Firefox/135.0"
SAFARI_18_MACOS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.0 Safari/605.1.15"
)
SAFARI_18_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1"
)
# what each browser sends (Chrome's from curl_cffi's recordings of the real browser)
HINTS = {
    CHROME_142_WINDOWS: (
        '"Chromium";v="142", "Google Chrome";v="142", "Not_A Brand";v="99"',
        "?0",
        '"Windows"',
    ),
    EDGE_131_MACOS: (
        '"Microsoft Edge";v="131", "Chromium";v="131", "Not_A Brand";v="24"',
        "?0",
        '"macOS"',
    ),
    CHROME_136_ANDROID: (
        '"Chromium";v="136", "Google Chrome";v="136", "Not.A/Brand";v="99"',
        "?1",
        '"Android"',
    ),
    OPERA_115_LINUX: ('"Chromium";v="130", "Opera";v="115", "Not?A_Brand";v="99"', "?0", '"Linux"'),
    FIREFOX_135_LINUX: None,
    SAFARI_18_MACOS: None,
}


def hints_seen(site: AIPowerSite) -> set[tuple[str | None, ...]]:
    names = ("user-agent", "sec-ch-ua", "sec-ch-ua-mobile", "sec-ch-ua-platform")
    return {tuple(request.headers.get(name) for name in names) for request in site.requests}


HINT_IDS = ["chrome142-windows", "edge131-macos", "chrome136-android", "opera115-linux",
            "firefox135", "safari18"]  # fmt: skip


@pytest.mark.parametrize("user_agent", list(HINTS), ids=HINT_IDS)
def test_client_hints_describe_the_users_browser(either, user_agent, monkeypatch):
    """The site sees the user's User-Agent with that browser's own hints, or none for
    Firefox and Safari: through httpx2, and through curl_cffi even when the user chose
    to impersonate Chrome (the profile's hints are left out)."""
    monkeypatch.setenv("CHATGPTFREE_USER_AGENT", user_agent)
    result = prompt(either.chat_url)
    assert (result.exit_code, result.output) == (0, ANSWER + "Hi\n")
    expected = HINTS[user_agent] or (None, None, None)
    assert hints_seen(either) == {(user_agent, *expected)}


def test_without_a_user_agent_the_hints_match_the_default_one(site, transport):
    result = prompt(site.chat_url)
    assert result.exit_code == 0, result.output
    [(agent, brands, mobile, platform)] = hints_seen(site)
    version = agent.split("Chrome/")[1].split(".")[0]
    assert f'"Google Chrome";v="{version}"' in brands and f'"Chromium";v="{version}"' in brands
    assert mobile == "?0"
    assert platform == ('"Windows"' if "Windows" in agent else '"Linux"')


@pytest.fixture
def profiles_played(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The curl_cffi browser profiles requests were sent with."""
    pytest.importorskip("curl_cffi")
    from curl_cffi.curl import Curl

    played: list[str] = []
    original = Curl.impersonate

    def impersonate(self, target, *args, **kwargs):
        played.append(str(getattr(target, "value", target)))
        return original(self, target, *args, **kwargs)

    monkeypatch.setattr(Curl, "impersonate", impersonate)
    return played


@pytest.mark.parametrize(
    ("user_agent", "chosen", "profile"),
    [
        (CHROME_142_WINDOWS, None, "chrome142"),
        (CHROME_136_ANDROID, None, "chrome136"),
        (FIREFOX_135_LINUX, None, "firefox135"),
        (SAFARI_18_MACOS, None, "safari180"),
        (SAFARI_18_IPHONE, None, "safari180_ios"),
        (EDGE_131_MACOS, "chrome", "chrome131"),  # a family chosen: its nearest version
        (FIREFOX_135_LINUX, "chrome131", "chrome131"),  # a profile chosen: as it is
    ],
)
def test_the_browser_profile_follows_the_user_agent(
    user_agent, chosen, profile, profiles_played, monkeypatch
):
    """With the [browser] extra and the user's User-Agent, curl plays the closest
    browser, unless the user named one; the site sees the User-Agent and its hints."""
    monkeypatch.setenv("CHATGPTFREE_USER_AGENT", user_agent)
    if chosen is None:
        monkeypatch.delenv("CHATGPTFREE_IMPERSONATE")
    else:
        monkeypatch.setenv("CHATGPTFREE_IMPERSONATE", chosen)
    with AIPowerSite("2.4.71") as site:
        result = prompt(site.chat_url)
    assert (result.exit_code, result.output) == (0, ANSWER + "Hi\n")
    assert profiles_played and set(profiles_played) == {profile}
    expected = HINTS.get(user_agent) or (None, None, None)
    assert hints_seen(site) == {(user_agent, *expected)}


@pytest.mark.parametrize(
    ("user_agent", "profile"),
    [
        (CHROME_142_WINDOWS, "chrome142"),
        (EDGE_131_MACOS, "chrome131"),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/101.0.4951.64 Safari/537.36 Edg/101.0.1210.47", "edge101"),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like "
         "Gecko) Chrome/151.0.0.0 Safari/537.36", "chrome151_macos"),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/151.0.0.0 Safari/537.36", "chrome151"),
        (CHROME_136_ANDROID, "chrome131_android"),
        (FIREFOX_135_LINUX, "firefox135"),
        ("Mozilla/5.0 (Windows NT 10.0; rv:140.0) Gecko/20100101 Firefox/140.0", "firefox144"),
        (SAFARI_18_MACOS, "safari18_0"),
        (SAFARI_18_IPHONE, "safari18_0_ios"),
        ("curl/8.5.0", None),
    ],
)  # fmt: skip
def test_profile_for_user_agent(user_agent, profile):
    """Against a fixed list of profiles, as curl_cffi names them."""
    available = ["chrome99", "chrome131", "chrome142", "chrome151", "chrome151_macos",
                 "chrome131_android", "edge101", "firefox135", "firefox144", "safari17_0",
                 "safari18_0", "safari18_0_ios", "safari26_0", "tor145"]  # fmt: skip
    assert llm_chatgptfree.profile_for_user_agent(user_agent, available) == profile


def test_chromium_hints_match_what_curl_cffi_recorded():
    """Every Chrome that curl_cffi plays since Chrome 107: our hints for its User-Agent
    are the ones the real browser sent (its recorded default headers)."""
    pytest.importorskip("curl_cffi")
    with AIPowerSite("1.8.96") as site:
        from curl_cffi import requests as curl

        for profile in llm_chatgptfree.curl_profiles():
            known = llm_chatgptfree.profile_version(profile)
            if known is None or known[0] != "chrome" or known[1][0] < 107:
                continue
            site.requests.clear()
            curl.get(site.chat_url, impersonate=profile, timeout=10)
            headers = site.requests[0].headers
            hints = llm_chatgptfree.client_hints(headers["user-agent"])
            assert hints["sec-ch-ua"] == headers["sec-ch-ua"], profile
            assert hints["sec-ch-ua-platform"] == headers["sec-ch-ua-platform"], profile


# -- 7. cookies never go over plain http ---------------------------------------------------


class ElsewhereSite(AIPowerSite):
    """The local site as ``http://chat.example:PORT`` (its pages name that address); it is
    reached through itself as an http proxy, so nothing leaves 127.0.0.1."""

    @property
    def base_url(self) -> str:
        return f"http://chat.example:{self.port}"


def through_the_site(site: AIPowerSite, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every request goes through the local site, a forward proxy that records it."""
    monkeypatch.setenv("CHATGPTFREE_PROXY", f"http://127.0.0.1:{site.port}")


def test_saved_cookies_never_go_to_an_http_site(site, monkeypatch):
    """``-o site http://chatgptfree.ai/``: the cookies saved for chatgptfree.ai (with
    ``cookies set`` and in CHATGPTFREE_COOKIES) are not sent in clear on the first GET."""
    through_the_site(site, monkeypatch)
    saved = run("chatgptfree", "cookies", "set", "chatgptfree.ai", "cf_clearance=SECRETcf1")
    assert saved.exit_code == 0, saved.output
    monkeypatch.setenv("CHATGPTFREE_COOKIES", "__cf_bm=SECRETbm2")
    result = prompt("http://chatgptfree.ai/chat/")
    assert (result.exit_code, result.output) == (0, ANSWER + "Hi\n")
    assert [(r.method, r.headers["host"]) for r in site.requests] == [
        ("GET", "chatgptfree.ai"),
        ("POST", "chatgptfree.ai"),
    ]
    assert all(request.proxied for request in site.requests)
    assert [request.headers.get("cookie") for request in site.requests] == [None, None]


def test_cookies_saved_for_an_http_url_go_there_on_purpose(site, monkeypatch):
    through_the_site(site, monkeypatch)
    saved = run("chatgptfree", "cookies", "set", "http://chatgptfree.ai/", "cf_clearance=OKcf1")
    assert saved.output == "Saved 1 cookie for http://chatgptfree.ai: cf_clearance\n"
    assert run("chatgptfree", "cookies", "list").output == "http://chatgptfree.ai: cf_clearance\n"
    result = prompt("http://chatgptfree.ai/chat/")
    assert (result.exit_code, result.output) == (0, ANSWER + "Hi\n")
    assert [request.headers.get("cookie") for request in site.requests] == [
        "cf_clearance=OKcf1"
    ] * 2
    removed = run("chatgptfree", "cookies", "remove", "http://chatgptfree.ai")
    assert removed.exit_code == 0, removed.output


def test_the_another_site_advice_never_leads_to_a_leak(transport, monkeypatch):
    """A page whose chat box posts to an http host the user has cookies for: the advice
    names its https address; and one who saves the http address anyway sends no cookie."""
    with ElsewhereSite("2.4.71") as site:  # 2.x pages name their admin-ajax in full
        through_the_site(site, monkeypatch)
        run("chatgptfree", "cookies", "set", f"chat.example:{site.port}", "cf_clearance=SECRETcf1")
        result = prompt("http://chatgptfree.ai/chat/")
        assert result.exit_code == 1
        one_sentence(result.output)
        origin = f"chat.example:{site.port}"
        assert result.output.endswith(
            f"sites add NAME https://{origin}/ (its cookies are sent over https only)\n"
        ), result.output
        added = run("chatgptfree", "sites", "add", "elsewhere", f"http://{origin}/")
        assert added.exit_code == 0, added.output
        result = run("-m", "chatgptfree/elsewhere", "Hi")
        assert (result.exit_code, result.output) == (0, ANSWER + "Hi\n")
        assert all(request.proxied for request in site.requests)
        sent = {request.headers["host"]: request.headers.get("cookie") for request in site.requests}
        assert sent == {"chatgptfree.ai": None, origin: None}


@pytest.mark.parametrize(
    ("url", "sent"),
    [
        ("https://chatgptfree.ai/", "cf_clearance=1"),
        ("http://chatgptfree.ai/", None),
        ("http://chatgptfree.ai:8080/", None),
        ("http://plain.example/", "b=2"),
        ("https://plain.example/", "b=2"),
        ("http://127.0.0.1:8088/", "c=3"),
        ("http://localhost:8088/", "d=4"),
        ("http://[::1]:8088/", "e=5"),
    ],
)
def test_which_saved_cookies_go_where(url, sent):
    jar = llm_chatgptfree.CookieJar(
        {
            "chatgptfree.ai": {"cf_clearance": "1"},
            "http://plain.example": {"b": "2"},
            "127.0.0.1:8088": {"c": "3"},
            "localhost:8088": {"d": "4"},
            "[::1]:8088": {"e": "5"},
        }
    )
    assert jar.header_for(url) == sent


# -- 14. SSL_CERT_FILE and SSL_CERT_DIR, on both transports --------------------------------


def certificate_folder(ca_path: str, folder: Path) -> str:
    """A CA folder as OpenSSL (and curl's BoringSSL) reads it: ``<subject hash>.0``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to name a CA folder's files")
    found = subprocess.run(
        [openssl, "x509", "-hash", "-noout", "-in", ca_path],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    folder.mkdir()
    shutil.copyfile(ca_path, folder / f"{found.stdout.strip()}.0")
    return str(folder)


@pytest.fixture
def tls_site(transport: str) -> Iterator[AIPowerSite]:
    """The 2.x site over https, with a throw-away CA that nothing trusts by default."""
    with AIPowerSite("2.4.71", tls=True) as running:
        yield running


def other_ca_file(tmp_path: Path) -> str:
    """A CA file that does not hold the site's CA."""
    import trustme

    path = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


@pytest.mark.parametrize("setting", ["dir", "file and dir", "file"])
def test_ssl_cert_dir_and_file_are_trusted_on_both_transports(
    tls_site, setting, tmp_path, monkeypatch
):
    """$SSL_CERT_DIR alone, $SSL_CERT_FILE alone, or both (each adding its certificates):
    the site's certificate is trusted through httpx2 and through curl."""
    if "dir" in setting:
        monkeypatch.setenv("SSL_CERT_DIR", certificate_folder(tls_site.ca_path, tmp_path / "ca"))
    if setting == "file":
        monkeypatch.setenv("SSL_CERT_FILE", tls_site.ca_path)
    elif "file" in setting:
        monkeypatch.setenv("SSL_CERT_FILE", other_ca_file(tmp_path))
    result = prompt(tls_site.chat_url)
    assert (result.exit_code, result.output) == (0, ANSWER + "Hi\n")


def test_an_untrusted_certificate_says_what_to_set(tls_site, tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", other_ca_file(tmp_path))
    result = prompt(tls_site.chat_url)
    assert result.exit_code == 1
    one_sentence(result.output)
    assert result.output.startswith(f"Error: {tls_site.chat_url} sent a certificate that is not")
    assert result.output.endswith(
        ": set SSL_CERT_FILE or SSL_CERT_DIR to trust its certificate.\n"
    ), result.output
    probed = run("chatgptfree", "probe", tls_site.chat_url)
    assert "set SSL_CERT_FILE or SSL_CERT_DIR to trust its certificate" in probed.output
    assert tls_site.requests == []


def test_a_missing_certificate_file_is_one_sentence(tls_site, tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    result = prompt(tls_site.chat_url)
    assert result.exit_code == 1
    one_sentence(result.output)
    assert result.output.startswith("Error: Cannot load the certificates of SSL_CERT_FILE")
