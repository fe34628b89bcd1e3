"""The fault catalogue and the page variants: names, what request each fault concerns, help.

A ``Fault`` is a ``StrEnum`` (plain strings such as ``"http_503"`` convert to it and a typo
raises ``ValueError``). Each member carries:

* ``target``: which request it concerns by default: ``"page"`` (a page GET), ``"cache"``
  (2.x step 1), ``"stream"`` (2.x step 2), ``"chat"`` (the request that makes the model
  answer: the 1.x POST, the 2.x stream step, 2.3's non-stream message), ``"nonce"`` (2.x
  nonce refresh) or ``"any"`` admin-ajax request;
* ``generations``: the protocol generations it plays on (``"1.x"``, ``"2.x"``);
* ``help``: one line for ``--list-faults``.

Where each fault is played: transport faults (a proxy, the web server or a CDN answering
instead of WordPress) and reply modifiers in ``hostile.py``; page contents in ``pages.py``;
the plugin's own refusals and the stand-in model's failures in ``v1.py`` / ``v2.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Literal, SupportsIndex

Target = Literal["page", "cache", "stream", "chat", "nonce", "any"]
TARGETS: tuple[str, ...] = ("page", "cache", "stream", "chat", "nonce", "any")
BOTH = ("1.x", "2.x")
V1 = ("1.x",)
V2 = ("2.x",)


class Fault(StrEnum):
    """A named misbehaviour of the site, its target request and its help line."""

    target: Target
    generations: tuple[str, ...]
    help: str

    def __new__(cls, value: str, target: Target, generations: tuple[str, ...], help: str):
        member = str.__new__(cls, value)
        member._value_ = value
        member.target = target
        member.generations = generations
        member.help = help
        return member

    # -- transport: something in front of WordPress answers ---------------------------
    CLOUDFLARE_403 = "cloudflare_403", "any", BOTH, "Cloudflare challenge page, HTTP 403"
    CLOUDFLARE_503 = "cloudflare_503", "any", BOTH, "Cloudflare challenge page, HTTP 503"
    HTTP_500 = "http_500", "any", BOTH, "nginx error page, HTTP 500"
    HTTP_502 = "http_502", "any", BOTH, "nginx error page, HTTP 502"
    HTTP_503 = "http_503", "any", BOTH, "nginx error page, HTTP 503"
    HTTP_504 = "http_504", "any", BOTH, "nginx error page, HTTP 504"
    WP_CRITICAL = "wp_critical", "any", BOTH, "WordPress 'critical error' page, HTTP 500"
    RESET = "reset", "any", BOTH, "the connection is reset (RST) before any byte"
    SLOW = "slow", "any", BOTH, "nothing for slow_seconds, then a reset"
    ZERO_200 = "zero_200", "any", BOTH, "admin-ajax's '0' with HTTP 200"
    ECHO_COOKIE = "echo_cookie", "any", BOTH, "HTTP 500 whose body prints the request's cookies"
    DRIP = "drip", "any", BOTH, "the reply one byte every drip_interval s, headers included"
    GZIP_BOMB = "gzip_bomb", "any", BOTH, "gzip body of ~1 MB that inflates to ~1 GB"
    OVERSTATED_LENGTH = (
        "overstated_length", "any", BOTH, "Content-Length larger than the body, kept open"
    )  # fmt: skip
    DEEP_JSON = "deep_json", "any", BOTH, "HTTP 200 JSON answer nested 100 000 levels"

    # -- the reply as sent, altered -----------------------------------------------------
    FRAGMENTED = "fragmented", "chat", BOTH, "the reply in 7-byte network pieces"
    BOM = "bom", "chat", BOTH, "a UTF-8 byte order mark before the body"
    CR_ONLY = "cr_only", "chat", BOTH, "SSE with \\r line endings"
    CUT = "cut", "chat", BOTH, "connection reset after the first two text frames"
    STALL = "stall", "chat", BOTH, "first two text frames, slow_seconds of silence, reset"
    ENDLESS_LINE = "endless_line", "chat", BOTH, "an SSE line that never ends (300 MB at most)"

    # -- the stand-in model fails ------------------------------------------------------
    # (on a providers site each in the bot's API's own words and events: providers.py)
    UPSTREAM_401 = "upstream_401", "chat", BOTH, "the model API refuses the key (alias bad_key)"
    UPSTREAM_429 = "upstream_429", "chat", BOTH, "the model API rate-limits (alias rate_limited)"
    STREAM_ERROR = "stream_error", "chat", BOTH, "an error event from the model mid-answer"
    RESPONSE_FAILED = "response_failed", "chat", V2, "response.failed from the model (09)"
    UPSTREAM_CUT = "upstream_cut", "chat", BOTH, "the model's connection drops mid-answer"
    CONNECTION_ERROR = (
        "connection_error", "chat", V2, "'Connection Error: …' right after message_start"
    )  # fmt: skip
    INCOMPLETE = (
        "incomplete", "chat", BOTH, "the model stops at its token limit (05; alias max_tokens)"
    )  # fmt: skip
    EMPTY = "empty", "chat", BOTH, "the model answers nothing"
    BIG = "big", "chat", BOTH, "an answer of big_answer_bytes in 999-character deltas"
    INVALID_UTF8 = "invalid_utf8", "chat", BOTH, "a delta with invalid UTF-8 bytes"
    OPENROUTER = "openrouter", "chat", BOTH, "': OPENROUTER PROCESSING' comments between frames"
    STATUS_ONLY = "status_only", "stream", V2, "status events then done: an empty answer"
    CITATIONS = "citations", "stream", V2, "a citations event before done"
    UNKNOWN_EVENT = "unknown_event", "stream", V2, "an event no client knows, before the text"
    NO_DONE = "no_done", "stream", V2, "text, then the end of the body without done"
    DONE_OPEN = "done_open", "chat", BOTH, "done (1.x [DONE]), then the body never ends"

    # -- the plugin refuses ------------------------------------------------------------
    NO_AI = "no_ai", "chat", V1, "1.x 'Unable to initialize the AI instance' error"
    LIMITED = "limited", "chat", V1, "1.x error words then data: [LIMITED]"
    TOKEN_LIMIT = "token_limit", "chat", BOTH, "token limit reached (2.x: as quota)"
    QUOTA = "quota", "chat", V2, "quota error (2.4.5+: with quota_notice), then done"
    GUEST_DISABLED = "guest_disabled", "chat", V2, "'Access disabled for guests.'"
    IP_BANNED = "ip_banned", "chat", BOTH, "the visitor's IP is banned"
    WORD_BANNED = "word_banned", "chat", BOTH, "the message holds a banned word"
    FLAGGED = "flagged", "chat", V2, "the moderation system flags the message"
    API_KEY_MISSING = "api_key_missing", "chat", V2, "'API key missing for <provider>.'"
    STREAM_NONCE = "stream_nonce", "stream", V2, "the stream refuses the nonce (error + done)"
    CACHE_NONCE = "cache_nonce", "cache", V2, "the cache step refuses the nonce (403)"
    KEY_LOST = "key_lost", "stream", V2, "'Message not found in cache.'"
    KEY_EXPIRED = "key_expired", "stream", V2, "'Cached message has expired.'"
    CORS_DENIED = "cors_denied", "any", V2, "'This domain is not permitted…' (cors_denied)"

    # -- pages -------------------------------------------------------------------------
    REDIRECT_SAME = "redirect_same", "page", BOTH, "page 302 to the same page on this site"
    REDIRECT_FOREIGN = (
        "redirect_foreign", "page", BOTH, "page 302 to another port serving the same page"
    )  # fmt: skip
    EXPIRED_LINK_403 = (
        "expired_link_403", "page", BOTH, "page 403 'The link you followed has expired.'"
    )  # fmt: skip
    MINUS_ONE_403 = "minus_one_403", "page", BOTH, "page 403 with body -1"
    HUGE_PAGE = "huge_page", "page", BOTH, "a 20 MB page (the chat box at its end)"
    LT_PAGE = "lt_page", "page", BOTH, "a 1 MB page of '<'"
    A_PAGE = "a_page", "page", BOTH, "a 1 MB page of '<a '"
    CDATA_PAGE = "cdata_page", "page", BOTH, "a '<![ ' before the chat box"
    FOREIGN_AJAX_URL = (
        "foreign_ajax_url", "page", BOTH, "another ajax URL before the real one (a collector)"
    )  # fmt: skip

    def applies_to(self, generation: str) -> bool:
        return generation in self.generations

    def at(self, selector: object) -> tuple[Fault, str]:
        """This fault on one bot's requests only: a bot id, its label, its page ``provider``
        or its API (``openai``, ``google``, ``deepseek``, ``anthropic``, ``xai``,
        ``openrouter``): ``Fault.UPSTREAM_429.at("anthropic")``."""
        return self, f"{self.target}@{str(selector).lower()}"

    @classmethod
    def _missing_(cls, value: object) -> Fault | None:
        """The issue's names for the model API's faults: ``bad_key``, ``rate_limited``,
        ``max_tokens``."""
        return {"bad_key": cls.UPSTREAM_401, "rate_limited": cls.UPSTREAM_429,
                "max_tokens": cls.INCOMPLETE}.get(str(value))  # fmt: skip


class PageVariant(StrEnum):
    """How the chat page is marked up (the bot page stays as captured)."""

    NORMAL = "normal"
    NO_CHATBOX = "no_chatbox"
    CLOUDFLARE_403 = "cloudflare_403"
    CLOUDFLARE_503 = "cloudflare_503"
    # a JavaScript challenge on every path, passed by a real browser (challenge.py)
    CHALLENGE = "challenge"
    CHALLENGE_SLOW = "challenge-slow"
    CHALLENGE_NEVER = "challenge-never"
    CHALLENGE_CLICK = "challenge-click"
    # 1.x
    MINIFIED = "minified"
    ENTITIES = "entities"
    SEVERAL = "several"
    WIDGET_ONLY = "widget_only"
    PARAMS_ONLY = "params_only"
    # 2.x
    POPUP = "popup"
    DOUBLE_QUOTED = "double_quoted"
    DUPLICATE_BOT = "duplicate_bot"
    CHATGPTFREE = "chatgptfree"


VARIANTS_1X = frozenset({"minified", "entities", "widget_only", "params_only"})
VARIANTS_2X = frozenset({"popup", "double_quoted", "duplicate_bot", "chatgptfree"})

Entry = Fault | tuple[Fault, str]


def fault_entry(entry: object) -> Entry:
    """A queue entry checked: a ``Fault`` (or its name), or ``(fault, target)``; a target
    may name one bot: ``"chat@25875"``, ``"chat@anthropic"``, ``"@claude"`` (the fault's own
    target on that bot)."""
    if isinstance(entry, tuple):
        base, at, selector = str(entry[1] if len(entry) == 2 else "").partition("@")
        fault = Fault(entry[0])
        base = base or (fault.target if selector else "")
        if len(entry) != 2 or base not in TARGETS or (at and not selector):
            raise ValueError(
                f"a fault entry is (fault, target), target one of {TARGETS}, maybe @bot"
            )
        return fault, f"{base}@{selector.lower()}" if selector else base
    return Fault(entry)


def bot_concerns(concerns: frozenset[str], selectors: Iterable[str]) -> frozenset[str]:
    """What a request for a bot concerns: its kinds, and each kind at each of the bot's names."""
    names = [str(name).lower() for name in selectors if name]
    return concerns | {f"{kind}@{name}" for kind in concerns for name in names}


def entry_target(entry: Entry) -> str:
    return entry[1] if isinstance(entry, tuple) else entry.target


def entry_fault(entry: Entry) -> Fault:
    return entry[0] if isinstance(entry, tuple) else entry


class FaultQueue(list):
    """A list of fault entries that refuses a misspelt one when it is added."""

    def __init__(self, entries: Iterable[object] = ()) -> None:
        super().__init__(fault_entry(entry) for entry in entries)

    def append(self, entry: object) -> None:
        super().append(fault_entry(entry))

    def insert(self, index: SupportsIndex, entry: object) -> None:
        super().insert(index, fault_entry(entry))

    def extend(self, entries: Iterable[object]) -> None:
        super().extend(fault_entry(entry) for entry in entries)

    def __iadd__(self, entries: Iterable[object]):  # type: ignore[override]
        self.extend(entries)
        return self

    def __setitem__(self, index, value) -> None:  # type: ignore[override]
        if isinstance(index, slice):
            super().__setitem__(index, [fault_entry(entry) for entry in value])
        else:
            super().__setitem__(index, fault_entry(value))

    def take(self, concerns: frozenset[str]) -> Fault | None:
        """Remove and return the first entry that concerns a request (caller holds the lock)."""
        for index, entry in enumerate(self):
            if entry_target(entry) in concerns:
                del self[index]
                return entry_fault(entry)
        return None
