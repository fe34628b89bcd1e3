"""The way to the site, end to end: connections, cookies per host, where the prompt goes,
proxies, the httpx2 hook the deadlines need, and life without the [browser] extra.

Every scenario runs against the local AI Power site through both transports (httpx2, and
curl_cffi impersonating a browser) and, where it applies, both protocol generations. The
site doubles as a forward proxy: a request in absolute form is answered as usual and
recorded with ``proxied`` set and its ``proxy-authorization`` header.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import ssl
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import llm_chatgptfree
from tests.aipower_site import AIPowerSite, Fault, Recorded
from tests.conftest import async_model, logs_json, run, sync_model

ANSWER = "Hello from the fake upstream. You said: "
TEN_TURNS = "".join(f"t{turn}\n" for turn in range(1, 11)) + "quit\n"
PROXY_USER = "alice"
PROXY_PASSWORD = "pr0xy@PASSw0rd"  # the "@" travels percent-encoded in the proxy URL
PROXY_PASSWORD_IN_URL = "pr0xy%40PASSw0rd"
PASSWORD_MARKS = (b"pr0xy", b"PASSw0rd")


# -- helpers ---------------------------------------------------------------------------


def host(site: AIPowerSite) -> str:
    return f"127.0.0.1:{site.port}"


def prompt(url: str, *options: str, text: str = "Hi"):
    return run("-m", "chatgptfree", "-o", "site", url, *options, text)


def one_sentence(output: str) -> str:
    """The error line of a failed command: one line, no traceback."""
    assert output.startswith("Error: "), output
    assert output.count("\n") == 1 and "Traceback" not in output, output
    return output


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def proxy_url(site: AIPowerSite, port: int | None = None) -> str:
    where = f"127.0.0.1:{port or site.port}"
    return f"http://{PROXY_USER}:{PROXY_PASSWORD_IN_URL}@{where}"


def proxy_credentials(request: Recorded) -> str:
    """``user:password`` as the proxy received it in ``Proxy-Authorization: Basic …``."""
    scheme, _, token = request.headers["proxy-authorization"].partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(token).decode()


def cookies_sent(requests: list[Recorded]) -> list[str | None]:
    return [request.headers.get("cookie") for request in requests]


@pytest.fixture
def other(either: AIPowerSite) -> Iterator[AIPowerSite]:
    """A second, unrelated site of the same release on another port."""
    with AIPowerSite(either.release) as running:
        yield running


@pytest.fixture(params=[False, True], ids=["http", "https"])
def chat_site(
    request: pytest.FixtureRequest, either: AIPowerSite, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AIPowerSite]:
    """The site of each generation over plain HTTP, and over HTTPS with a private CA that
    the clients trust through SSL_CERT_FILE."""
    if not request.param:
        yield either
        return
    with AIPowerSite(either.release, tls=True) as running:
        monkeypatch.setenv("SSL_CERT_FILE", running.ca_path)
        yield running


# -- connections -------------------------------------------------------------------------


def test_a_ten_turn_chat_opens_one_connection(chat_site):
    result = run("chat", "-m", "chatgptfree", "-o", "site", chat_site.chat_url, input=TEN_TURNS)
    assert result.exit_code == 0, result.output
    assert "Error" not in result.output, result.output
    assert len(chat_site.upstream) == 10, "each turn reached the model once"
    assert chat_site.upstream[-1][-1]["content"].endswith("User: t10\nAssistant:")
    per_turn = 1 if chat_site.generation == "1.x" else 2
    assert chat_site.page_gets == 1 and chat_site.ajax_posts == 10 * per_turn
    assert chat_site.connections == 1
    assert {r.connection_id for r in chat_site.requests} == {1}


def test_ten_python_prompts_share_one_connection(either):
    model = sync_model()
    answers = [model.prompt(f"q{n}", site=either.chat_url).text() for n in range(10)]
    assert answers == [f"{ANSWER}q{n}" for n in range(10)]
    assert len(either.requests) == 1 + 10 * (1 if either.generation == "1.x" else 2)
    assert either.connections == 1


def test_async_bursts_in_one_loop_reuse_connections(either, transport):
    """Two bursts of eight concurrent prompts, then three in a row, in one event loop:
    never more connections than prompts in flight at once."""

    async def ask(text: str) -> str:
        return await async_model().prompt(text, site=either.chat_url).text()

    async def main() -> list[str]:
        answers = list(await asyncio.gather(*(ask(f"a{n}") for n in range(8))))
        answers += await asyncio.gather(*(ask(f"b{n}") for n in range(8)))
        for n in range(3):
            answers.append(await ask(f"c{n}"))
        return answers

    answers = asyncio.run(main())
    texts = [f"a{n}" for n in range(8)] + [f"b{n}" for n in range(8)] + ["c0", "c1", "c2"]
    assert answers == [ANSWER + text for text in texts]
    assert len(either.requests) == 1 + 19 * (1 if either.generation == "1.x" else 2)
    # httpx2: one connection per prompt in flight, kept. curl_cffi's session juggles up to
    # ten handles and now and then replaces a connection: a little slack, still reuse.
    assert either.connections <= (8 if transport == "httpx" else 12)


def test_a_prompt_pays_for_tls_only_when_it_uses_it(transport, monkeypatch):
    """A first prompt to an http:// site loads no CA bundle; https loads it once."""
    with AIPowerSite("2.4.71") as plain, AIPowerSite("2.4.71", tls=True) as secure:
        loads: list[str] = []
        for name in ("load_verify_locations", "load_default_certs", "set_default_verify_paths"):
            original = getattr(ssl.SSLContext, name)

            def counted(self, *args, _original=original, _name=name, **kwargs):
                loads.append(_name)
                return _original(self, *args, **kwargs)

            monkeypatch.setattr(ssl.SSLContext, name, counted)
        monkeypatch.setattr(llm_chatgptfree, "_TLS_CONTEXTS", {})
        llm_chatgptfree.reset_blocking_pool()  # as this process's first prompt
        try:
            assert prompt(plain.chat_url).output == ANSWER + "Hi\n"

            async def ask() -> str:
                return await async_model().prompt("Hey", site=plain.chat_url).text()

            assert asyncio.run(ask()) == ANSWER + "Hey"
            assert llm_chatgptfree._TLS_CONTEXTS == {} and loads == []

            monkeypatch.setenv("SSL_CERT_FILE", secure.ca_path)
            assert prompt(secure.chat_url, text="one").output == ANSWER + "one\n"
            after_first = list(loads)
            assert prompt(secure.chat_url, text="two").output == ANSWER + "two\n"
        finally:
            llm_chatgptfree.reset_blocking_pool()
    if transport == "httpx":
        assert list(llm_chatgptfree._TLS_CONTEXTS) == [(secure.ca_path, "")]
        assert after_first and loads == after_first, "the CA bundle is parsed once"
    else:
        assert llm_chatgptfree._TLS_CONTEXTS == {}, "curl verifies with its own TLS"


# -- cookies belong to a host --------------------------------------------------------------


def test_cookies_are_kept_privately_and_sent_only_to_their_host(either, other, user_dir):
    result = run("chatgptfree", "cookies", "set", host(either), "a=SECRETa1; b=SECRETb2")
    assert result.exit_code == 0, result.output
    assert result.output == f"Saved 2 cookies for {host(either)}: a, b\n"
    path = user_dir / "chatgptfree" / "cookies.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    listed = run("chatgptfree", "cookies", "list")
    assert (listed.exit_code, listed.output) == (0, f"{host(either)}: a, b\n")

    assert prompt(either.chat_url).output == ANSWER + "Hi\n"
    assert cookies_sent(either.requests) == ["a=SECRETa1; b=SECRETb2"] * len(either.requests)
    assert prompt(other.chat_url).output == ANSWER + "Hi\n"
    assert other.requests and cookies_sent(other.requests) == [None] * len(other.requests)
    assert either.foreign_requests == [] and other.foreign_requests == []
    assert b"SECRET" not in (user_dir / "logs.db").read_bytes()
    assert "SECRET" not in json.dumps(logs_json("-n", "0"))

    removed = run("chatgptfree", "cookies", "remove", host(either))
    assert (removed.exit_code, removed.output) == (0, f"Removed the cookies of {host(either)}\n")
    assert "No cookies saved" in run("chatgptfree", "cookies", "list").output
    either.reset_counts()
    assert prompt(either.chat_url).output == ANSWER + "Hi\n"
    assert either.requests and cookies_sent(either.requests) == [None] * len(either.requests)


def test_cookies_never_follow_a_redirect_to_another_site(either):
    run("chatgptfree", "cookies", "set", host(either), "cf_clearance=SECRETcf1")
    either.page_faults = [Fault.REDIRECT_FOREIGN]
    result = prompt(either.chat_url)
    assert result.exit_code == 1
    one_sentence(result.output)
    assert f"redirects to {either.foreign_url}/chat/" in result.output
    assert "another site; not following" in result.output
    assert either.foreign_requests == [] and either.ajax_posts == 0 and either.upstream == []

    # Once the user trusts the other site, the redirect is followed: without the cookies
    trusted = run("chatgptfree", "sites", "add", "elsewhere", either.foreign_url + "/")
    assert trusted.exit_code == 0, trusted.output
    either.page_faults = [Fault.REDIRECT_FOREIGN]
    prompt(either.chat_url)
    followed = [r for r in either.foreign_requests if "aipower_redirected" in r.query]
    assert followed and followed[0].path == "/chat/"
    assert cookies_sent(either.foreign_requests) == [None] * len(either.foreign_requests)
    assert set(cookies_sent(either.requests)) == {"cf_clearance=SECRETcf1"}


def test_a_redirect_within_the_site_is_followed_with_its_cookies(either):
    run("chatgptfree", "cookies", "set", host(either), "cf_clearance=SECRETcf1")
    either.page_faults = [Fault.REDIRECT_SAME]
    assert prompt(either.chat_url).output == ANSWER + "Hi\n"
    assert either.page_gets == 2 and either.foreign_requests == []
    assert set(cookies_sent(either.requests)) == {"cf_clearance=SECRETcf1"}


@pytest.mark.parametrize("way", ["environment", "llm keys"])
def test_the_old_cookie_setting_is_for_the_default_site_only(either, other, way, monkeypatch):
    cookie = "cf_clearance=LEGACYsecret1; session=LEGACYsecret2"
    monkeypatch.setenv("CHATGPTFREE_SITE", either.chat_url)
    if way == "environment":
        monkeypatch.setenv("CHATGPTFREE_COOKIES", cookie)
    else:
        assert run("keys", "set", "chatgptfree", "--value", cookie).exit_code == 0

    assert run("-m", "chatgptfree", "Hi").output == ANSWER + "Hi\n"
    assert set(cookies_sent(either.requests)) == {cookie}

    assert prompt(other.chat_url).output == ANSWER + "Hi\n"
    saved = run("chatgptfree", "sites", "add", "unrelated", other.chat_url)
    assert saved.exit_code == 0, saved.output
    assert run("-m", "chatgptfree/unrelated", "Hello").output == ANSWER + "Hello\n"
    assert other.ajax_posts >= 2
    assert cookies_sent(other.requests) == [None] * len(other.requests)


def test_a_bare_value_is_taken_as_cf_clearance(either, monkeypatch):
    result = run("chatgptfree", "cookies", "set", host(either), "BAREclearance123")
    assert result.exit_code == 0, result.output
    assert result.output == f"Saved 1 cookie for {host(either)}: cf_clearance\n"
    assert prompt(either.chat_url).output == ANSWER + "Hi\n"
    assert set(cookies_sent(either.requests)) == {"cf_clearance=BAREclearance123"}

    run("chatgptfree", "cookies", "remove", host(either))
    monkeypatch.setenv("CHATGPTFREE_SITE", either.chat_url)
    monkeypatch.setenv("CHATGPTFREE_COOKIES", "BAREfromTheEnvironment")
    either.reset_counts()
    assert run("-m", "chatgptfree", "Hi").output == ANSWER + "Hi\n"
    assert set(cookies_sent(either.requests)) == {"cf_clearance=BAREfromTheEnvironment"}


@pytest.mark.parametrize(
    "value",
    [
        "cf_clearance=SECRETnl1\nX-Injected: yes",
        "SECRETbare2\r\nX-Injected: yes",
        "a=1; b=SECRETtab3\tz",
    ],
    ids=["pair", "bare", "tab"],
)
def test_a_cookie_value_a_header_cannot_carry_is_refused_unseen(value, user_dir):
    result = run("chatgptfree", "cookies", "set", "127.0.0.1:8088", value)
    assert result.exit_code == 2
    assert "cannot carry" in result.output
    assert "SECRET" not in result.output and "Injected" not in result.output
    assert not (user_dir / "chatgptfree" / "cookies.json").exists()


def test_an_old_style_cookie_a_header_cannot_carry_is_one_sentence(site, monkeypatch):
    monkeypatch.setenv("CHATGPTFREE_COOKIES", "cf_clearance=SECRETnl\nX-Injected: yes")
    result = prompt(site.chat_url)
    assert result.exit_code == 1
    one_sentence(result.output)
    assert "CHATGPTFREE_COOKIES" in result.output and "cannot carry" in result.output
    assert "SECRET" not in result.output and "Injected" not in result.output
    assert site.requests == []


# -- where the prompt goes ----------------------------------------------------------------


def test_another_endpoint_on_the_page_never_gets_the_prompt(either):
    run("chatgptfree", "cookies", "set", host(either), "cf_clearance=SECRETcf1")
    either.page_faults = [Fault.FOREIGN_AJAX_URL]
    result = prompt(either.chat_url)
    assert either.foreign_requests == []
    if either.generation == "1.x":
        # another plugin's parameters name a collector elsewhere: the chat box's own wins
        assert result.output == ANSWER + "Hi\n"
        assert [r.path for r in either.ajax_requests()] == ["/wp-admin/admin-ajax.php"]
        assert set(cookies_sent(either.requests)) == {"cf_clearance=SECRETcf1"}
        return
    assert result.exit_code == 1
    one_sentence(result.output)
    assert f"sends prompts to {either.foreign_url}, another site; not sending" in result.output
    assert f"llm chatgptfree sites add NAME {either.foreign_url}/" in result.output
    assert either.ajax_posts == 0 and either.upstream == []

    # saved explicitly, that origin is trusted: the prompt goes there, the cookies do not
    trusted = run("chatgptfree", "sites", "add", "collector", either.foreign_url + "/")
    assert trusted.exit_code == 0, trusted.output
    either.page_faults = [Fault.FOREIGN_AJAX_URL]
    prompt(either.chat_url, text="for the collector")
    sent = [r for r in either.foreign_requests if r.path.endswith("/admin-ajax.php")]
    assert sent and sent[0].fields.get("message") == "for the collector"
    assert cookies_sent(either.foreign_requests) == [None] * len(either.foreign_requests)


# -- proxies ---------------------------------------------------------------------------------


@pytest.mark.parametrize("way", ["option", "environment", "python"])
def test_the_proxy_password_reaches_the_proxy_and_nowhere_else(either, way, user_dir, monkeypatch):
    proxy = proxy_url(either)
    if way == "option":
        result = prompt(either.chat_url, "-o", "proxy", proxy)
        assert (result.exit_code, result.output) == (0, ANSWER + "Hi\n")
    elif way == "environment":
        monkeypatch.setenv("CHATGPTFREE_PROXY", proxy)
        result = prompt(either.chat_url)
        assert (result.exit_code, result.output) == (0, ANSWER + "Hi\n")
    else:
        response = sync_model().prompt("Hi", site=either.chat_url, proxy=proxy)
        assert response.text() == ANSWER + "Hi"
        assert PROXY_PASSWORD_IN_URL not in repr(response.prompt.options)

    assert either.requests and all(request.proxied for request in either.requests)
    credentials = {proxy_credentials(request) for request in either.requests}
    assert credentials == {f"{PROXY_USER}:{PROXY_PASSWORD}"}
    if way == "python":
        return
    database = (user_dir / "logs.db").read_bytes()
    assert not any(mark in database for mark in PASSWORD_MARKS)
    [entry] = logs_json("-n", "0")
    assert "pr0xy" not in json.dumps(entry) and "PASSw0rd" not in json.dumps(entry)
    logged = (entry["options_json"] or {}).get("proxy")
    assert logged == (f"http://{PROXY_USER}:***@{host(either)}" if way == "option" else None)


@pytest.mark.parametrize("way", ["option", "environment"])
def test_a_proxy_that_is_down_is_named_as_the_proxy(site, way, monkeypatch):
    port = closed_port()
    proxy = proxy_url(site, port)
    if way == "option":
        result = prompt(site.chat_url, "-o", "proxy", proxy)
    else:
        monkeypatch.setenv("CHATGPTFREE_PROXY", proxy)
        result = prompt(site.chat_url)
    assert result.exit_code == 1
    one_sentence(result.output)
    assert result.output.startswith(f"Error: Could not reach the proxy 127.0.0.1:{port}: ")
    assert host(site) not in result.output
    assert "pr0xy" not in result.output and "PASSw0rd" not in result.output
    assert site.requests == []


def test_probe_goes_the_same_way_as_a_prompt(either, monkeypatch):
    """Proxy (and its password), cookies and browser: the same for probe as for a prompt."""
    run("chatgptfree", "cookies", "set", host(either), "cf_clearance=SECRETcf1")
    monkeypatch.setenv("CHATGPTFREE_PROXY", proxy_url(either))
    probed = run("chatgptfree", "probe", either.chat_url)
    assert probed.exit_code == 0, probed.output
    assert "pr0xy" not in probed.output and "SECRET" not in probed.output
    by_probe = list(either.requests)
    either.reset_counts()
    assert prompt(either.chat_url).output == ANSWER + "Hi\n"
    by_prompt = list(either.requests)
    assert len(by_probe) >= 2 and by_prompt
    for request in by_probe + by_prompt:
        assert request.proxied
        assert proxy_credentials(request) == f"{PROXY_USER}:{PROXY_PASSWORD}"
        assert request.headers.get("cookie") == "cf_clearance=SECRETcf1"
    agents = {request.headers.get("user-agent") for request in by_probe + by_prompt}
    assert len(agents) == 1 and None not in agents


# -- public interfaces only -----------------------------------------------------------------


def test_the_transport_reaches_into_no_library_internals():
    """Deadlines, batching and the network are had through public API alone."""
    source = Path(llm_chatgptfree.__file__).read_text()
    for private in ("._pool", "_network_backend", "_h11_state", "_receive_buffer", "_httpcore_"):
        assert private not in source


def test_a_deadline_already_past_stops_the_transport_before_it_connects():
    transport = llm_chatgptfree.H11Transport(None, tls=False)
    request = llm_chatgptfree.Request("GET", f"http://127.0.0.1:{closed_port()}/", {})

    async def send() -> None:
        try:
            await llm_chatgptfree.within(transport.send(request, 5.0), time.monotonic() - 1)
        finally:
            await transport.aclose()

    with pytest.raises(llm_chatgptfree.TimedOut):
        asyncio.run(send())


def test_what_arrived_together_is_taken_as_one_piece():
    """Chunks that came while the reader was busy reach it joined, and the read-ahead stops
    at its bound instead of filling the memory."""
    piece = 4096

    class Burst:
        def __init__(self) -> None:
            self.sent = 0

        async def chunks(self):
            for _ in range(4 * llm_chatgptfree.READ_AHEAD // piece):
                self.sent += 1
                yield b"x" * piece

        async def aclose(self) -> None:
            pass

    async def read() -> tuple[int, int]:
        body = Burst()
        arrivals = llm_chatgptfree.Arrivals(body)
        await asyncio.sleep(0.05)  # the reader is busy; the task reads ahead to its bound
        ahead = body.sent
        first = await arrivals.take(time.monotonic() + 5)
        await arrivals.aclose()
        return ahead, len(first)

    ahead, first = asyncio.run(read())
    assert ahead * piece <= llm_chatgptfree.READ_AHEAD + piece
    assert first == ahead * piece and ahead > 1


# -- without the [browser] extra ---------------------------------------------------------------


@pytest.fixture
def without_curl_cffi(monkeypatch: pytest.MonkeyPatch) -> None:
    available = llm_chatgptfree.module_available
    monkeypatch.setattr(
        llm_chatgptfree, "module_available", lambda name: name != "curl_cffi" and available(name)
    )


@pytest.mark.parametrize("release", ["1.8.96", "2.4.71"])
def test_without_the_extra_impersonation_is_one_clear_error(
    release, without_curl_cffi, monkeypatch
):
    with AIPowerSite(release) as site:
        result = prompt(site.chat_url, "-o", "impersonate", "chrome")
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert "llm install 'llm-chatgptfree[browser]'" in result.output
        assert result.output.count("Error") == 1
        assert site.requests == []

        assert prompt(site.chat_url, "-o", "impersonate", "none").output == ANSWER + "Hi\n"
        monkeypatch.delenv("CHATGPTFREE_IMPERSONATE")  # the default: httpx2 without the extra
        assert prompt(site.chat_url, text="default").output == ANSWER + "default\n"


def test_without_the_extra_an_impersonating_environment_is_one_sentence_everywhere(
    without_curl_cffi, monkeypatch
):
    monkeypatch.setenv("CHATGPTFREE_IMPERSONATE", "chrome")
    with AIPowerSite("2.4.71") as site:
        result = prompt(site.chat_url)
        one_sentence(result.output)
        assert "llm install 'llm-chatgptfree[browser]'" in result.output
        try:
            probed = run("chatgptfree", "probe", site.chat_url)
        except ValueError as error:
            pytest.fail(f"probe raised {error!r}")
        assert probed.exit_code == 1
        assert "llm install 'llm-chatgptfree[browser]'" in probed.output
        assert site.requests == []
