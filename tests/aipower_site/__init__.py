"""A local WordPress site running the AI Power chat box, for the tests (stdlib, plus
``trustme`` for TLS).

``AIPowerSite(release)`` serves the real captured pages of ``tests/samples`` (rewritten to
its own address and nonce) and answers ``/wp-admin/admin-ajax.php`` like the release does:
the 1.x protocol (1.8.79 – 1.8.96, and 2.2 which still runs 1.9.18 code; ``v1.py``) or
the 2.x AIPKit protocol (2.3, 2.4.71; ``v2.py``). ``AIPowerSite("2.4.71", providers=True)`` is
chatgptfree.ai's setup: its captured pages and nine bots, each on its own model API
(``providers.py``: each API's events and words, images, web search; ``calls`` records what
each API received). Its stand-in model answers ``Hello from
the fake upstream. You said: <last user message>`` (``model.py``). Faults from a typed
catalogue (``faults.py``) play on demand; every request and what the model saw are
recorded.

Reading order: ``faults.py`` (the catalogue), this facade (knobs and dispatch), ``http.py``
(server and reply writer), ``v1.py`` / ``v2.py`` (protocols), ``providers.py`` (the six
model APIs behind 2.4.71), ``hostile.py`` (transport faults), ``pages.py``, ``wp.py``
(WordPress text functions), ``__main__.py`` (the CLI).
"""

from __future__ import annotations

import dataclasses
import math
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from . import hostile, pages
from .challenge import VARIANTS as CHALLENGES
from .challenge import Challenge
from .faults import (
    VARIANTS_1X,
    VARIANTS_2X,
    Fault,
    FaultQueue,
    PageVariant,
    bot_concerns,
    entry_fault,
    entry_target,
    fault_entry,
)
from .http import Recorded, Reply, SiteHandler, SiteServer, captured_reply, unresponsive_port
from .providers import Call
from .v1 import V1
from .v2 import CHATGPTFREE_BOTS, V2, Bot, default_bots, preflight, provider_bots
from .wp import zero_reply

__all__ = [
    "RELEASES",
    "AIPowerSite",
    "Bot",
    "Call",
    "Fault",
    "PageVariant",
    "Recorded",
    "Reply",
    "unresponsive_port",
]
RELEASES = ("1.8.79", "1.8.85", "1.8.91", "1.8.96", "2.2", "2.3", "2.4.71")
NONCE_TICK = 12 * 3600  # wp_nonce_tick: a nonce lives for this tick and the next
PAGE = frozenset({"page"})
SWITCHES = {"allowWebSearchTool": "web_search", "allowGoogleSearchGrounding": "google_grounding",
            "imageUploadEnabledUI": "image_upload"}  # fmt: skip
POST_MAX_SIZE = 8 * 1024 * 1024  # PHP's post_max_size on Debian: a larger POST loses its fields


class AIPowerSite:
    """A WordPress site with the AI Power chat box on 127.0.0.1 (random port by default)."""

    def __init__(
        self, release: str = "1.8.96", port: int = 0, tls: bool = False, providers: bool = False
    ) -> None:
        if release not in RELEASES:
            raise ValueError(f"unknown release {release!r}: one of {', '.join(RELEASES)}")
        if providers and release != "2.4.71":
            raise ValueError("the providers setup (chatgptfree.ai's nine bots) is 2.4.71's")
        self.release = release
        self.providers = providers
        self.generation = "2.x" if release in ("2.3", "2.4.71") else "1.x"
        self.tls = tls
        self.ca_path: str | None = None
        self._port = port
        # what the site answers
        self.stream = True  # 1.x chat box / 2.3 default bot streams
        self.bot_stream = False  # 1.x custom bot / 2.3 second bot streams
        self.legacy_model = False  # 1.x: a completion model (choices[0].text)
        self.model = "gpt-4o-mini-2024-07-18"  # 1.x: what the chunks name
        self.reply: Callable[[list[dict]], str] | None = None
        self.answer_deltas: int | None = None
        self.big_answer_bytes = 10_000_000
        self.bots: dict[int, Bot] = default_bots(release) if self.generation == "2.x" else {}
        if providers:
            self.bots = provider_bots()
        self.triggers = providers  # the stand-in reacts to FAKE_429 … (providers.TRIGGERS)
        self.bot_config: dict[int, dict] = {}  # providers pages: data-config settings per bot
        self.post_max_size = POST_MAX_SIZE
        self.guest_quota: int | None = None
        self.banned_words: list[str] = []
        self.banned_ip = False
        self.history_model_usage: dict | None = None  # merged into history's bot entries
        self.page_nonce_override: str | None = None  # a stale cached page
        # how it answers
        self.chunk_size: int | None = None  # None: one HTTP chunk per SSE frame
        self.chunk_delay = 0.0
        self.first_byte_delay = 0.0
        self.page_delay = 0.0
        self.slow_seconds = 5.0
        self.drip_interval = 0.01
        # what it saw
        self.requests: list[Recorded] = []
        self.foreign_requests: list[Recorded] = []  # sent to foreign_url (the collector)
        self.upstream: list[list[dict]] = []
        self.calls: list[Call] = []  # providers setup: each model call as its API received it
        self.lock = threading.RLock()
        self._fault: Fault | tuple[Fault, str] | None = None
        self._faults = FaultQueue()
        self._page_faults = FaultQueue()
        self._page_variant = PageVariant.NORMAL
        self.challenge = Challenge()  # played on every path by the challenge variants
        self._replay: Path | None = None
        self._clock_offset = 0.0
        self._nonces: dict[int, str] = {}
        self._ids = 0
        self._responses = 0
        self._stopping = threading.Event()
        self._servers: list[SiteServer] = []
        self._threads: list[threading.Thread] = []
        self._ca_dir: tempfile.TemporaryDirectory | None = None
        self._protocol: V1 | V2 = V2(self) if self.generation == "2.x" else V1(self)

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> AIPowerSite:
        self._stopping.clear()
        context = self._tls_context() if self.tls else None
        self._servers = [
            SiteServer(self._port, self._route, self._stopping, context, "aipower-site"),
            SiteServer(0, self._route_elsewhere, self._stopping, context, "aipower-elsewhere"),
        ]
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever,
                name=server.name,
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop serving: waits end, connections close, every thread is joined."""
        self._stopping.set()
        for server in self._servers:
            server.close_everything()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        if self._ca_dir is not None:
            self._ca_dir.cleanup()
            self._ca_dir = None

    def __enter__(self) -> AIPowerSite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _tls_context(self):
        import ssl

        import trustme

        authority = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self._ca_dir = tempfile.TemporaryDirectory(prefix="aipower-site-")
        self.ca_path = str(Path(self._ca_dir.name) / "ca.pem")
        authority.cert_pem.write_to_path(self.ca_path)
        return context

    # -- addresses -------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._servers, "the site is not running"
        return self._servers[0].server_address[1]

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def home_url(self) -> str:
        return self.base_url + "/"

    @property
    def chat_url(self) -> str:
        return self.base_url + "/chat/"

    @property
    def bot_url(self) -> str:
        return self.base_url + "/bot/"

    @property
    def ajax_url(self) -> str:
        return self.base_url + "/wp-admin/admin-ajax.php"

    @property
    def foreign_url(self) -> str:
        """Another origin on 127.0.0.1: serves the same pages, records the rest."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self._servers[1].server_address[1]}"

    # -- what was seen ---------------------------------------------------------------

    @property
    def connections(self) -> int:
        """TCP connections the site accepted (since start or ``reset_counts``)."""
        return self._servers[0].connections if self._servers else 0

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised inside the site while answering (a bug of the site, not a fault)."""
        return [error for server in self._servers for error in server.errors]

    @property
    def page_gets(self) -> int:
        return sum(1 for r in self.requests if r.method == "GET" and "admin-ajax" not in r.path)

    @property
    def ajax_posts(self) -> int:
        """admin-ajax requests of any method (the name is from 1.x, where all are POSTs)."""
        return len(self.ajax_requests())

    def ajax_requests(self, action: str | None = None) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if r.path.endswith("/admin-ajax.php")
            and (action is None or r.fields.get("action") == action)
        ]

    def reset_counts(self) -> None:
        with self.lock:
            self.requests.clear()
            self.foreign_requests.clear()
            self.upstream.clear()
            self.calls.clear()
            if self._servers:
                self._servers[0].connections = 0

    # -- knobs -----------------------------------------------------------------------

    @property
    def fault(self) -> Fault | tuple[Fault, str] | None:
        """Played on every request it concerns (after the queue)."""
        return self._fault

    @fault.setter
    def fault(self, value: object) -> None:
        self._fault = None if value is None else fault_entry(value)

    @property
    def faults(self) -> FaultQueue:
        """Played once each: a request takes the first entry that concerns it."""
        return self._faults

    @faults.setter
    def faults(self, entries: object) -> None:
        self._faults = FaultQueue(entries)

    @property
    def page_faults(self) -> FaultQueue:
        """Played once each, in order, by page GETs."""
        return self._page_faults

    @page_faults.setter
    def page_faults(self, entries: object) -> None:
        self._page_faults = FaultQueue(entries)

    @property
    def page_variant(self) -> PageVariant:
        return self._page_variant

    @page_variant.setter
    def page_variant(self, value: object) -> None:
        variant = PageVariant(value)
        wrong = VARIANTS_2X if self.generation == "1.x" else VARIANTS_1X
        if variant in wrong:
            raise ValueError(f"page variant {variant} is not for a {self.generation} site")
        if variant == PageVariant.CHATGPTFREE:
            for bot_id, bot in CHATGPTFREE_BOTS.items():
                self.bots.setdefault(bot_id, Bot(bot.label, bot.model, bot.provider))
        self._page_variant = variant

    def configure_bot(self, bot_id: int, **config: object) -> None:
        """Change a bot's page settings (``data-config``) as wp-admin would, e.g.
        ``webToggleDefaultOn=True``; the switches the server honours follow
        (``allowWebSearchTool``, ``allowGoogleSearchGrounding``, ``imageUploadEnabledUI``)."""
        bot = self.bots[bot_id]
        self.bot_config.setdefault(bot_id, {}).update(config)
        for key, attribute in SWITCHES.items():
            if key in config:
                setattr(bot, attribute, bool(config[key]))

    @property
    def nonce(self) -> str:
        """The nonce pages show now (one per 12-hour tick of the site's clock)."""
        with self.lock:
            return self._nonces.setdefault(self._tick(), secrets.token_hex(5))

    @nonce.setter
    def nonce(self, value: str) -> None:
        with self.lock:
            self._nonces = {self._tick(): value}

    def rotate_nonce(self) -> str:
        """A new nonce becomes the only valid one (an expired page, a day later)."""
        self.nonce = secrets.token_hex(5)
        return self.nonce

    def nonce_ok(self, value: str) -> bool:
        """WordPress accepts the nonce of this tick and of the one before."""
        current = self.nonce
        with self.lock:
            return bool(value) and value in (current, self._nonces.get(self._tick() - 1))

    def now(self) -> float:
        """The site's clock (``advance_clock`` moves it)."""
        return time.time() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        self._clock_offset += seconds

    def _tick(self) -> int:
        return math.ceil(self.now() / NONCE_TICK)

    def replay_next(self, response_http: Path | str) -> None:
        """Answer the next admin-ajax request with a captured response, verbatim."""
        self._replay = Path(response_http)

    def wait(self, seconds: float) -> None:
        """Sleep, but wake up when the site stops."""
        self._stopping.wait(seconds)

    # -- for the protocols -----------------------------------------------------------

    def moderation_fault(self, message: str) -> Fault | None:
        if self.banned_ip:
            return Fault.IP_BANNED
        for word in self.banned_words:
            if re.search(rf"(?<!\w){re.escape(word)}(?!\w)", message, re.IGNORECASE):
                return Fault.WORD_BANNED
        return None

    def next_id(self) -> int:
        with self.lock:
            self._ids += 1
            return self._ids

    def next_response_id(self) -> str:
        with self.lock:
            self._responses += 1
            return f"resp_fake{self._responses:06d}"

    def record_upstream(self, messages: list[dict]) -> None:
        with self.lock:
            self.upstream.append([dict(message) for message in messages])

    def record_call(self, call: Call) -> int:
        """Keep a model call (providers setup); its number counts every model call."""
        with self.lock:
            self.calls.append(call)
            return self._responses

    # -- dispatch --------------------------------------------------------------------

    def _route(self, request: Recorded, handler: SiteHandler) -> Reply:
        with self.lock:
            self.requests.append(request)
        if self._page_variant in CHALLENGES:
            blocked = self.challenge.reply(self._page_variant, request)
            if blocked is not None:
                return blocked
        if request.path.endswith("/wp-admin/admin-ajax.php"):
            return self._ajax(request)
        with self.lock:
            fault = entry_fault(self._page_faults.pop(0)) if self._page_faults else None
        fault = fault or self._take(PAGE)
        if self._page_variant in (PageVariant.CLOUDFLARE_403, PageVariant.CLOUDFLARE_503):
            fault = Fault(self._page_variant.value)
        if self.page_delay:
            self.wait(self.page_delay)
        return self._play(fault, request, lambda f: pages.reply(self, request.path, f))

    def _ajax(self, request: Recorded) -> Reply:
        if self._replay is not None:
            capture, self._replay = self._replay, None
            return captured_reply(capture)
        if self.first_byte_delay:
            self.wait(self.first_byte_delay)
        protocol = self._protocol
        if request.method == "OPTIONS" and self.generation == "2.x":
            return preflight(request)
        if request.method == "POST" and len(request.body) > self.post_max_size:
            request = dataclasses.replace(request, form={})  # PHP drops the whole POST
        action = request.fields.get("action", "")
        if action not in protocol.actions:
            return zero_reply(action)
        fault = self._take(self._concerns(request, protocol.concerns(action)))
        return self._play(fault, request, lambda f: protocol.answer(request, action, f))

    def _concerns(self, request: Recorded, concerns: frozenset[str]) -> frozenset[str]:
        """A request for a bot also concerns faults aimed at that bot (``Fault.at``)."""
        bot_id = request.fields.get("bot_id", "").strip()
        bot = self.bots.get(int(bot_id)) if bot_id.isdigit() else None
        if bot is None:
            return concerns
        return bot_concerns(concerns, [bot_id, bot.label, bot.provider, bot.api or ""])

    def _take(self, concerns: frozenset[str]) -> Fault | None:
        """The fault a request concerned by ``concerns`` plays: queue first, then ``fault``."""
        with self.lock:
            fault = self._faults.take(concerns)
            if fault is None and self._fault and entry_target(self._fault) in concerns:
                fault = entry_fault(self._fault)
            return fault

    def _play(
        self, fault: Fault | None, request: Recorded, build: Callable[[Fault | None], Reply]
    ) -> Reply:
        """The reply for ``fault``: a transport reply, or the site's own (maybe altered)."""
        if fault in hostile.TRANSPORT:
            reply = hostile.TRANSPORT[fault](self, request)
            if reply is not None:
                return reply
        reply = build(fault)
        if reply.chunked:
            reply.piece_size, reply.piece_delay = self.chunk_size, self.chunk_delay
        if fault in hostile.MODIFIERS:
            reply = hostile.MODIFIERS[fault](reply, self)
        return reply

    def _route_elsewhere(self, request: Recorded, handler: SiteHandler) -> Reply:
        """The other origin: the same pages (a redirect's target), a collector for the rest."""
        with self.lock:
            self.foreign_requests.append(request)
        if request.path.endswith("/admin-ajax.php"):
            return zero_reply()
        return pages.reply(self, request.path, None)
