"""llm-chatgptfree: the free chat of chatgptfree.ai as llm models.

chatgptfree.ai is a WordPress site running the chat box of the "AI Power" plugin, and so
are many other sites. One prompt is one short story:

1. find the chat box: GET the page and read its ``data-nonce``, ``data-post-id`` and
   friends (kept on disk for ten hours, so most prompts skip this step);
2. POST the whole conversation, as one message, to the site's ``admin-ajax.php``;
3. read the answer, a stream of OpenAI-style deltas or one JSON object, and yield its text.

The sync and async models share one core, ``Exchange``, which does no I/O: it yields what
it needs done (fetch a page, send the form, read more bytes, pause), and two small drivers,
one blocking and one asyncio, do it.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import functools
import html
import importlib.util
import json
import os
import re
import secrets
import ssl
import string
import tempfile
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import asdict, dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import click
import httpx2
import llm
from llm.parts import TextPart
from pydantic import Field, field_validator

# ---------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------

MODEL_ID = "gpt-4o-mini-2024-07-18"
ALIASES = ("chatgptfree",)
# gpt4free's ChatgptFree.model_aliases, kept as data and deliberately NOT registered:
# "gpt-4o-mini" is llm's own OpenAI model, and a plugin alias would silently send a
# user's OpenAI prompts to a scraped free site. Opt in with
# `llm aliases set gpt-4o-mini gpt-4o-mini-2024-07-18`.
SEED_MODEL_ALIASES = {"gpt-4o-mini": MODEL_ID}

DEFAULT_SITE = "https://chatgptfree.ai/"
SITE_ENV = "CHATGPTFREE_SITE"
COOKIES_KEY = "chatgptfree"
COOKIES_ENV = "CHATGPTFREE_COOKIES"
USER_AGENT_ENV = "CHATGPTFREE_USER_AGENT"

DEFAULT_TIMEOUT = 120.0  # seconds, as in gpt4free
CACHE_MAX_AGE = 10 * 3600  # WordPress nonces live 12 to 24 hours
CACHE_FORMAT = 1
RETRY_PAUSE = 0.5  # seconds before the single retry of a transient failure
ERROR_BODY_LIMIT = 64 * 1024  # bytes of an error page worth reading
JSON_BODY_LIMIT = 64 * 1024 * 1024  # a JSON answer larger than this is refused
QUOTE_LIMIT = 240  # characters of server text quoted in an error sentence

SHORTCODE_ACTION = "wpaicg_chat_shortcode_message"
WIDGET_ACTION = "wpaicg_chatbox_message"
KINDS = ("shortcode", "widget")  # the two chat boxes a page can hold
NONCE_MESSAGES = ("nonce verification failed", "invalid nonce", "security check")
TRANSIENT_STATUSES = {502, 503, 504}
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
BROWSER_HEADERS = {
    "Accept-Language": "en-US,en;q=0.9",
    "sec-ch-ua": '"Chromium";v="131", "Google Chrome";v="131", "Not_A Brand";v="24"',
    "sec-ch-ua-mobile": "?0",
    "sec-ch-ua-platform": '"Linux"',
}


class TransientError(llm.ModelError):
    """A failure before any answer arrived that is worth one more try."""


class NonceRejected(llm.ModelError):
    """The site refused the scraped nonce: scrape the page again and retry."""


# ---------------------------------------------------------------------------------------
# Where things are kept: the user's llm directory
# ---------------------------------------------------------------------------------------


def state_dir() -> Path:
    """The plugin's folder inside ``llm.user_dir()``."""
    return llm.user_dir() / "chatgptfree"


def write_private_file(path: Path, text: str) -> None:
    """Write ``text`` atomically (temporary file, then rename), for the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


_client_ids: dict[Path, str] = {}


def client_id() -> str:
    """This user's ``wpaicg_chat_client_id``: 10 letters and digits, made once and kept."""
    path = state_dir() / "client_id"
    if path in _client_ids:
        return _client_ids[path]
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError:
        value = ""
    if not (len(value) == 10 and value.isascii() and value.isalnum()):
        alphabet = string.ascii_letters + string.digits
        value = "".join(secrets.choice(alphabet) for _ in range(10))
        with contextlib.suppress(OSError):  # unwritable: a new id next time, no harm
            write_private_file(path, value + "\n")
    _client_ids[path] = value
    return value


# ---------------------------------------------------------------------------------------
# Page scraping: the chat box and its nonce
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatBox:
    """What a page tells a client about its AI Power chat box."""

    page: str  # the page the box was read from, after redirects
    ajax_url: str
    nonce: str
    post_id: str
    url: str  # the box's data-url, sent back as the "url" field
    bot_id: str
    kind: str  # "shortcode" or "widget"
    streams: bool | None  # data-openai_stream_nav, when the markup has it
    fetched_at: float

    def is_well_formed(self) -> bool:
        """True when every field has its type: a hand-edited cache file may differ."""
        texts = (
            self.page,
            self.ajax_url,
            self.nonce,
            self.post_id,
            self.url,
            self.bot_id,
        )
        return (
            all(isinstance(text, str) for text in texts)
            and self.kind in KINDS
            and isinstance(self.streams, bool | None)
            and isinstance(self.fetched_at, int | float)
        )

    @property
    def action(self) -> str:
        return WIDGET_ACTION if self.kind == "widget" else SHORTCODE_ACTION

    @property
    def identity(self) -> str:
        """The ``chatbot_identity`` field the plugin's own JavaScript sends."""
        if self.bot_id not in ("", "0"):
            return f"custom_bot_{self.bot_id}"
        return self.kind


class _ChatBoxFinder(HTMLParser):
    """Collects the attributes of every chat box ``<div>`` in a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.boxes: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "div":
            return
        values = {name: value or "" for name, value in attrs}
        classes = values.get("class", "").split()
        if "wpaicg-chat-shortcode" in classes or "wpaicg-chatbox" in classes:
            kind = values.get("data-type", "").strip()
            if kind not in KINDS:
                kind = "widget" if "wpaicg-chatbox" in classes else "shortcode"
            self.boxes.append(values | {"kind": kind})


_SEARCH_NONCE = re.compile(r'"search_nonce"\s*:\s*"([0-9a-f]{10})"')
_AJAX_URL = re.compile(r'"ajax_url"\s*:\s*("(?:[^"\\]|\\.)*")')


def find_chat_boxes(page_html: str) -> list[dict[str, str]]:
    """Every chat box of a page, as attribute dicts, in page order."""
    finder = _ChatBoxFinder()
    finder.feed(page_html)
    finder.close()
    return finder.boxes


def parse_chat_page(page_html: str, page_url: str, bot_id: str | None = None) -> ChatBox | None:
    """The page's first chat box (or the one of ``bot_id``), or None when it has none."""
    boxes = find_chat_boxes(page_html)
    if not boxes:
        return None
    chosen = next((b for b in boxes if b.get("data-bot-id") == bot_id), boxes[0])
    params_nonce = _SEARCH_NONCE.search(page_html)
    nonce = chosen.get("data-nonce") or (params_nonce and params_nonce.group(1)) or ""
    if not nonce:
        return None
    stream_nav = chosen.get("data-openai_stream_nav")
    return ChatBox(
        page=page_url,
        ajax_url=ajax_url_of(page_html, page_url),
        nonce=nonce.strip(),
        post_id=chosen.get("data-post-id", "").strip(),
        url=chosen.get("data-url", "").strip() or page_url.rstrip("/"),
        bot_id=bot_id or chosen.get("data-bot-id", "").strip() or "0",
        kind=chosen["kind"],
        streams=None if stream_nav is None else stream_nav.strip() == "1",
        fetched_at=time.time(),
    )


def is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def ajax_url_of(page_html: str, page_url: str) -> str:
    """``wpaicgParams.ajax_url`` when the page has it, else the site's admin-ajax.php."""
    match = _AJAX_URL.search(page_html)
    if match:
        try:
            url = json.loads(match.group(1))
        except ValueError:
            url = ""
        if isinstance(url, str) and is_http_url(url):
            return url
    parts = urlsplit(page_url)
    return urlunsplit((parts.scheme, parts.netloc, "/wp-admin/admin-ajax.php", "", ""))


def is_cloudflare_challenge(response: httpx2.Response, body: str) -> bool:
    """True for Cloudflare's "Just a moment..." interstitial."""
    if response.status_code not in (403, 429, 503):
        return False
    if response.headers.get("cf-mitigated", "").lower() == "challenge":
        return True
    return any(
        marker in body
        for marker in (
            "<title>Just a moment...</title>",
            "cf-please-wait",
            "_cf_chl_opt",
        )
    )


class PageCache:
    """Scraped chat boxes per site, in memory and in a private JSON file.

    A box is reused for ``CACHE_MAX_AGE`` seconds. The file is a cache and nothing more:
    when it is corrupt, unreadable, unwritable or of another format it is ignored (and
    rewritten), never an error.
    """

    def __init__(self) -> None:
        self._memory: dict[tuple[Path, str], ChatBox] = {}
        self._lock = threading.Lock()

    @staticmethod
    def path() -> Path:
        return state_dir() / "pages.json"

    def get(self, site: str, newer_than: float = 0.0) -> ChatBox | None:
        """The cached box for ``site`` when it is fresh and fetched after ``newer_than``."""
        path = self.path()
        box = self._memory.get((path, site)) or self._read_file(path).get(site)
        if box is None or not newer_than < box.fetched_at <= time.time():
            return None
        if time.time() - box.fetched_at > CACHE_MAX_AGE:
            return None
        self._memory[(path, site)] = box
        return box

    def put(self, site: str, box: ChatBox) -> None:
        path = self.path()
        with self._lock:
            self._memory[(path, site)] = box
            boxes = self._read_file(path)
            boxes[site] = box
            self._write_file(path, boxes)

    def forget(self, site: str | None = None) -> int:
        """Drop one site's box, or all of them; returns how many were dropped."""
        path = self.path()
        with self._lock:
            boxes = self._read_file(path)
            keys = list(boxes) if site is None else [k for k in boxes if k == site]
            for key in keys:
                del boxes[key]
            for key in [k for k in self._memory if k[0] == path]:
                if site is None or key[1] == site:
                    del self._memory[key]
            self._write_file(path, boxes)
            return len(keys)

    @staticmethod
    def _read_file(path: Path) -> dict[str, ChatBox]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != CACHE_FORMAT:
                return {}
            boxes = {site: ChatBox(**fields) for site, fields in data["sites"].items()}
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return {}
        return {site: box for site, box in boxes.items() if box.is_well_formed()}

    @staticmethod
    def _write_file(path: Path, boxes: dict[str, ChatBox]) -> None:
        data = {
            "format": CACHE_FORMAT,
            "sites": {site: asdict(box) for site, box in boxes.items()},
        }
        with contextlib.suppress(OSError):  # the in-memory copy still serves this process
            write_private_file(path, json.dumps(data, indent=2))


PAGE_CACHE = PageCache()


# ---------------------------------------------------------------------------------------
# Request building: the conversation becomes one message
# ---------------------------------------------------------------------------------------


def conversation_messages(prompt: llm.Prompt) -> list[tuple[str, str]]:
    """(role, text) of every message llm sends: system prompt, earlier turns, this prompt.

    ``prompt.messages`` is the whole chain in ``llm chat``, ``llm -c`` and Python
    conversations alike; from the second turn on it is the only place that still holds
    the system prompt.
    """
    messages = []
    for message in prompt.messages:
        text = "".join(part.text for part in message.parts if isinstance(part, TextPart))
        messages.append((message.role, text))
    return messages


def format_prompt(messages: list[tuple[str, str]]) -> str:
    """gpt4free's ``format_prompt``: one message verbatim, several as a script."""
    if len(messages) == 1:
        return messages[0][1]
    lines = [f"{role.capitalize()}: {text}" for role, text in messages]
    return "\n".join(lines) + "\nAssistant:"


def build_form(box: ChatBox, message: str, client: str) -> dict[str, str]:
    """The form the plugin's own JavaScript posts.

    ``wpaicg_chat_history`` is sent empty on purpose: the conversation already is in
    ``message``, and the server drops any history containing ``"`` or ``\\``.
    """
    return {
        "_wpnonce": box.nonce,
        "post_id": box.post_id,
        "url": box.url,
        "action": box.action,
        "message": message,
        "bot_id": box.bot_id,
        "chatbot_identity": box.identity,
        "wpaicg_chat_client_id": client,
        "wpaicg_chat_history": "[]",
        "chat_id": str(secrets.randbelow(100_000) + 1),
    }


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def public_url(url: str) -> str:
    """``url`` without any ``user:password@`` part."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def page_headers(user_agent: str, bust: bool) -> dict[str, str]:
    headers = {
        "User-Agent": user_agent,
        "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        **BROWSER_HEADERS,
    }
    if bust:
        headers |= {"Cache-Control": "no-cache", "Pragma": "no-cache"}
    return headers


def ajax_headers(box: ChatBox, user_agent: str) -> dict[str, str]:
    return {
        "User-Agent": user_agent,
        "Accept": "text/event-stream, application/json, */*",
        "Origin": origin_of(box.page),
        "Referer": public_url(box.page),
        "Sec-Fetch-Dest": "empty",
        "Sec-Fetch-Mode": "cors",
        "Sec-Fetch-Site": "same-origin",
        **BROWSER_HEADERS,
    }


def cache_busting(url: str) -> str:
    """``url`` with a query parameter no page cache has seen."""
    parts = urlsplit(url)
    extra = urlencode({"wpaicg_nocache": str(time.time_ns())})
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}".lstrip("&")))


def parse_cookies(value: str | None) -> dict[str, str]:
    """``name=value; name2=value2`` (a browser's Cookie header) as a dict."""
    if not value:
        return {}
    value = re.sub(r"^\s*cookie\s*:", "", value.strip(), flags=re.IGNORECASE)
    cookies = {}
    for pair in value.split(";"):
        name, sep, content = pair.strip().partition("=")
        if sep and name:
            cookies[name.strip()] = content.strip()
    return cookies


# ---------------------------------------------------------------------------------------
# Stream parsing: the answer, whatever shape the plugin release gave it
# ---------------------------------------------------------------------------------------


def one_line(text: str, limit: int = QUOTE_LIMIT) -> str:
    """Server text fit to quote in a one-line error: no tags, no newlines, bounded."""
    text = html.unescape(re.sub(r"<[^>]*>", " ", text))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def sentence(text: str) -> str:
    """``text`` ending in one full stop (or the mark it already has)."""
    return text if text[-1:] in (".", "!", "?", "…") else text + "."


def site_says(host: str, message: str) -> llm.ModelError:
    """The site's own error message, quoted."""
    return llm.ModelError(sentence(f"{host} says: {message}"))


def is_nonce_message(message: str) -> bool:
    lowered = message.lower()
    return any(lowered.startswith(m) for m in NONCE_MESSAGES)


SSE_FIELDS = ("data", "event", ":", "id", "retry")
_ERROR_WORD = re.compile(r'"content"\s*:\s*"(.*)"\s*}\s*}\s*]\s*}\s*$')


class AnswerReader:
    """Turns the bytes of one admin-ajax answer into text.

    The plugin answers either a server-sent-event stream (OpenAI chunks echoed verbatim,
    ``choices[0].delta.content`` or legacy ``choices[0].text``) or one JSON object. Bytes
    may arrive split anywhere, UTF-8 characters included. ``feed`` returns the text
    pieces ready so far; ``finish`` checks the answer ended properly and raises
    ``llm.ModelError`` when it did not.
    """

    def __init__(self, host: str) -> None:
        self.host = host
        self.mode: str | None = None  # "sse" or "json"
        self.done = False  # "data: [DONE]" seen
        self.finish_reason: str | None = None
        self.upstream_id: str | None = None
        self.model: str | None = None
        self.notice: str | None = None  # a banned-IP or flagged-word event
        self.chars = 0  # characters of answer handed out
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending: list[str] = []  # an unfinished line, or the whole JSON body
        self._pending_size = 0
        self._event = ""  # the SSE event type of the current frame
        self._error_words: list[str] = []  # the plugin's word-by-word error text
        self._error_closed = False
        self._tail: list[str] = []  # lines that are not SSE (old releases' final JSON)

    def feed(self, data: bytes) -> list[str]:
        if self.done or not data:
            return []
        text = self._decoder.decode(data)
        if self.mode is None:
            text = self._sniff(text)
            if self.mode is None:
                return []
        if self.mode == "json":
            self._keep(text)
            return []
        return self._lines(text)

    def finish(self) -> list[str]:
        """The last text, once the body has ended; raises if the answer is not whole."""
        text = "" if self.done else self._decoder.decode(b"", final=True)
        if self.mode is None:
            text = self._sniff(text + "\n") if (text or self._pending) else ""
        if self.mode is None:
            raise llm.ModelError(f"{self.host} sent an empty answer. Try again.")
        if self.mode == "json":
            self._keep(text)
            return self._json_answer("".join(self._pending))
        pieces = [] if self.done else self._lines(text + "\n")
        return pieces + self._stream_end()

    # -- sniffing and buffering ----------------------------------------------------------

    def _sniff(self, text: str) -> str:
        self._pending.append(text)
        seen = "".join(self._pending).lstrip()
        if not seen:
            return ""
        if seen[0] in "{[0-<" or not any(
            seen.startswith(f) or f.startswith(seen) for f in SSE_FIELDS
        ):
            self.mode = "json"
        elif any(seen.startswith(f) for f in SSE_FIELDS):
            self.mode = "sse"
        else:
            return ""  # a prefix of "data"/"event": wait for more
        text, self._pending, self._pending_size = "".join(self._pending), [], 0
        return text

    def _keep(self, text: str) -> None:
        self._pending.append(text)
        self._pending_size += len(text)
        if self._pending_size > JSON_BODY_LIMIT:
            raise llm.ModelError(
                f"{self.host} sent an answer of over {JSON_BODY_LIMIT // 2**20} MB; "
                "giving up on it."
            )

    def _lines(self, text: str) -> list[str]:
        if "\n" not in text:
            self._pending.append(text)
            return []
        first, *lines, rest = text.split("\n")
        lines.insert(0, "".join(self._pending) + first)
        self._pending = [rest] if rest else []
        pieces = []
        for line in lines:
            if self.done:
                break
            piece = self._line(line.rstrip("\r"))
            if piece:
                pieces.append(piece)
        return pieces

    # -- server-sent events ---------------------------------------------------------------

    def _line(self, line: str) -> str | None:
        if not line:
            self._event = ""
            return None
        if line.startswith(":"):
            return None  # a comment, such as OpenRouter's keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            return self._data(value)
        elif name not in ("id", "retry") and len(self._tail) < 20:
            self._tail.append(line)  # the JSON object old releases glue after the stream
        return None

    def _data(self, payload: str) -> str | None:
        if payload == "[DONE]":
            self.done = True
            return None
        if payload == "[LIMITED]":
            raise self.failure("the site stopped the answer", self._error_text())
        try:
            chunk = json.loads(payload)
        except ValueError:
            if self._event == "message":  # error words are inserted without escaping
                match = _ERROR_WORD.search(payload)
                self._error_word(match.group(1) if match else payload)
                return None
            raise self.failure(
                "the stream held a broken frame", repr(one_line(payload, 60))
            ) from None
        if not isinstance(chunk, dict):
            raise self.failure("the stream held a broken frame", repr(one_line(payload)))
        if "error" in chunk:
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise self.failure("the site's model failed", one_line(str(message)))
        if "msg" in chunk and "choices" not in chunk:
            return self._event_message(chunk)
        return self._choice(chunk)

    def _event_message(self, chunk: dict) -> None:
        message = one_line(str(chunk["msg"]))
        if chunk.get("tokenLimitReached"):
            raise site_says(self.host, message)
        self.notice = message  # banned IP or flagged words: an answer may still follow
        return None

    def _choice(self, chunk: dict) -> str | None:
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return None
        choice = choices[0]
        delta = choice.get("delta")
        content = delta.get("content") if isinstance(delta, dict) else None
        if content is None:
            content = choice.get("text")
        if self._event == "message":  # the plugin spelling out an error, word by word
            if isinstance(content, str):
                self._error_word(content)
            return None
        if choice.get("finish_reason"):
            if self._error_words:
                self._error_closed = True  # the end of the error words, not of an answer
            else:
                self.finish_reason = str(choice["finish_reason"])
        if self.upstream_id is None and isinstance(chunk.get("id"), str):
            self.upstream_id = chunk["id"]
        if self.model is None and isinstance(chunk.get("model"), str):
            self.model = chunk["model"]
        if isinstance(content, str) and content:
            self.chars += len(content)
            return content
        return None

    def _error_word(self, word: str) -> None:
        if not self._error_closed:  # the site's HTTP library retries: the words come twice
            self._error_words.append(word)

    def _error_text(self) -> str:
        return one_line("".join(self._error_words)) or "no reason given"

    def _stream_end(self) -> list[str]:
        if self._error_words:
            raise self.failure("the site's model failed", self._error_text())
        tail = self._tail_json()
        if self.chars == 0 and tail.get("status") == "error":
            raise site_says(self.host, one_line(str(tail.get("msg"))))
        if self.chars == 0 and self.notice:
            raise site_says(self.host, self.notice)
        if not (self.done or self.finish_reason):
            raise self.failure("the stream ended without a finish signal")
        if self.chars == 0:
            data = tail.get("data")
            if not (isinstance(data, str) and data.strip()):
                raise llm.ModelError(f"{self.host} sent an empty answer. Try again.")
            self.chars = len(data)
            return [data]
        return []

    def _tail_json(self) -> dict:
        try:
            tail = json.loads("".join(self._tail))
        except ValueError:
            return {}
        return tail if isinstance(tail, dict) else {}

    def failure(self, what: str, detail: str = "") -> llm.ModelError:
        """The error for an answer that went wrong after ``self.chars`` characters."""
        detail = f": {detail}" if detail else ""
        if self.chars:
            return llm.ModelError(
                f"The answer from {self.host} broke off after {self.chars:,} characters "
                f"({what}{detail}); the text above is incomplete."
            )
        return llm.ModelError(sentence(f"No answer from {self.host}: {what}{detail}"))

    # -- one JSON object ------------------------------------------------------------------

    def _json_answer(self, body: str) -> list[str]:
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise plain_body_error(self.host, body)
        message = one_line(str(answer.get("msg") or ""))
        if answer.get("status") == "success":
            data = answer.get("data")
            if isinstance(data, str) and data.strip():
                self.chars = len(data)
                return [data]
            raise llm.ModelError(f"{self.host} sent an empty answer. Try again.")
        if is_nonce_message(message):
            raise NonceRejected(message)
        if message:
            raise site_says(self.host, message)
        raise plain_body_error(self.host, body)


def summarize_body(body: str) -> str:
    """``: 'what the page says'`` (its first paragraph, its title or its start), or ``""``."""
    found = re.search(r"<p[^>]*>(.*?)</p>", body, re.IGNORECASE | re.DOTALL) or re.search(
        r"<title[^>]*>(.*?)</title>", body, re.IGNORECASE | re.DOTALL
    )
    shown = one_line(found.group(1) if found else body, 120)
    return f": {shown!r}" if shown else ""


def plain_body_error(host: str, body: str) -> llm.ModelError:
    """The error for an admin-ajax body that is neither a stream nor the plugin's JSON."""
    text = body.strip()
    if text == "0":
        return llm.ModelError(
            f"{host} has no AI Power chat handler (admin-ajax answered '0'): "
            "the chat box plugin is not active there."
        )
    if text == "-1":
        return NonceRejected("admin-ajax answered '-1'")
    if text.startswith("<") or "<title" in text.lower():
        return llm.ModelError(f"{host} sent a web page instead of an answer{summarize_body(text)}.")
    return llm.ModelError(
        f"{host} sent an answer this plugin does not understand: {one_line(text)!r}."
    )


# ---------------------------------------------------------------------------------------
# The core: one prompt's exchange with the site, free of I/O
# ---------------------------------------------------------------------------------------


@dataclass
class FetchPage:
    """Step: under the site's lock, take ``cached()`` or GET ``url`` and ``accept`` it."""

    site: str
    url: str
    headers: dict[str, str]
    cached: Callable[[], ChatBox | None]
    accept: Callable[[httpx2.Response], ChatBox]


@dataclass
class SendForm:
    """Step: POST ``form`` and hand back the response once its headers are in."""

    url: str
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class ReadMore:
    """Step: hand back the next bytes of the answer's body (``b""`` at its end)."""


@dataclass
class Pause:
    """Step: wait ``seconds``."""

    seconds: float


Step = FetchPage | SendForm | ReadMore | Pause
Steps = Generator[Step | str, Any, None]

_proxy_passwords: dict[str, str] = {}  # redacted proxy URL -> the URL as typed


def redact_proxy(url: str) -> str:
    """Keep a proxy password out of llm's logs: store it aside, log ``***`` instead."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    redacted = urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    _proxy_passwords[redacted] = url
    return redacted


class Exchange:
    """One prompt sent to an AI Power site and its answer read, as a generator of steps.

    ``steps()`` yields text for the user and steps for a driver to perform; the driver
    sends back the result of each step, or throws in the exception it raised.
    """

    def __init__(self, model: _ChatgptFreeBase, prompt: llm.Prompt, response: Any):
        options = prompt.options
        self.response = response
        self.site = options.site or model.site or os.environ.get(SITE_ENV) or DEFAULT_SITE
        self.host = urlsplit(self.site).netloc.rpartition("@")[2] or self.site
        self.bot_id = model.bot_id
        self.timeout = options.timeout or DEFAULT_TIMEOUT
        self.proxy = _proxy_passwords.get(options.proxy or "", options.proxy)
        self.cookies = parse_cookies(llm.get_key(alias=COOKIES_KEY, env=COOKIES_ENV))
        self.user_agent = os.environ.get(USER_AGENT_ENV) or USER_AGENT
        messages = conversation_messages(prompt)
        if not messages or messages[-1][0] != "user" or not messages[-1][1].strip():
            raise llm.ModelError("The prompt is empty: nothing was sent.")
        self.message = format_prompt(messages)
        self.shown = 0  # characters of answer already handed to the user
        self.retried = False

    def client_settings(self) -> dict[str, Any]:
        """Keyword arguments for an ``httpx2.Client`` or ``AsyncClient``."""
        return {
            "verify": shared_ssl_context(),
            "timeout": httpx2.Timeout(self.timeout),
            "proxy": self.proxy,
            "cookies": self.cookies,
            "follow_redirects": False,
        }

    # -- the story -------------------------------------------------------------------------

    def steps(self) -> Steps:
        """The whole exchange; every error leaves it as one sentence without secrets."""
        try:
            yield from self.attempts()
        except llm.ModelError as error:
            message = self.redact(str(error))
            if message == str(error):
                raise
            raise llm.ModelError(message) from None
        except Exception as error:  # anything else the transport raised, e.g. a bad header
            said = self.redact(one_line(str(error)) or type(error).__name__)
            raise llm.ModelError(sentence(f"Talking to {self.host} failed: {said}")) from error

    def attempts(self) -> Steps:
        """Find the chat box, send, read; refresh a rejected nonce or retry a blip once."""
        box: ChatBox | None = None
        rejected: ChatBox | None = None
        while True:
            try:
                if box is None:
                    box = yield from self.find_chat_box(rejected)
                head = yield from self.send(box)
                yield from self.read_answer(box, head)
                return
            except NonceRejected:
                if rejected is not None:
                    raise llm.ModelError(
                        f"{self.host} rejected a freshly scraped nonce too: the site "
                        "serves a stale cached page. Try again later, or point -o site "
                        "at a page that is not cached."
                    ) from None
                rejected, box = box, None
            except TransientError as error:
                if self.retried or self.shown:
                    raise llm.ModelError(str(error)) from None
                self.retried = True
                yield Pause(RETRY_PAUSE)

    def find_chat_box(self, rejected: ChatBox | None) -> Generator[Step, Any, ChatBox]:
        """The cached chat box of the site, or a fresh one from its page.

        After a rejected nonce the page is fetched again past any page cache, unless a
        concurrent prompt already did so.
        """
        newer_than = rejected.fetched_at if rejected else 0.0
        cached = PAGE_CACHE.get(self.site, newer_than)
        if cached is not None:
            return cached
        url = cache_busting(self.site) if rejected else self.site
        try:
            return (
                yield FetchPage(
                    site=self.site,
                    url=url,
                    headers=page_headers(self.user_agent, bust=bool(rejected)),
                    cached=lambda: PAGE_CACHE.get(self.site, newer_than),
                    accept=self.accept_page,
                )
            )
        except httpx2.HTTPError as error:
            raise self.transport_error(error, public_url(self.site)) from None

    def accept_page(self, response: httpx2.Response) -> ChatBox:
        """The chat box of a fetched page, now cached; or why there is none."""
        page = public_url(str(response.url))
        body = response.text
        if response.status_code != 200:
            raise self.status_error(response, body, page)
        box = parse_chat_page(body, str(response.url), self.bot_id)
        if box is None:
            raise llm.ModelError(
                f"No AI Power chat box on {page}: point -o site (or {SITE_ENV}) at a "
                "page that shows the chat."
            )
        PAGE_CACHE.put(self.site, box)
        return box

    def send(self, box: ChatBox) -> Generator[Step, Any, httpx2.Response]:
        """POST the conversation; returns the response once its headers are in."""
        form = build_form(box, self.message, client_id())
        try:
            head = yield SendForm(box.ajax_url, ajax_headers(box, self.user_agent), form)
            if head.status_code != 200:
                body = yield from self.read_error_body()
                raise self.status_error(head, body, f"{self.host}'s admin-ajax")
        except httpx2.HTTPError as error:
            raise self.transport_error(error, self.host) from None
        return head

    def read_error_body(self) -> Generator[Step, Any, str]:
        chunks = []
        size = 0
        while size < ERROR_BODY_LIMIT and (chunk := (yield ReadMore())):
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks).decode("utf-8", errors="replace")

    def read_answer(self, box: ChatBox, head: httpx2.Response) -> Steps:
        """Yield the answer's text as it arrives, then record what llm should log."""
        reader = AnswerReader(self.host)
        try:
            while chunk := (yield ReadMore()):
                if text := "".join(reader.feed(chunk)):  # one piece per network read
                    self.shown += len(text)
                    yield text
            if text := "".join(reader.finish()):
                self.shown += len(text)
                yield text
        except httpx2.HTTPError as error:
            if not self.shown:
                raise self.transport_error(error, self.host) from None
            raise reader.failure(self.describe(error)) from None
        finally:
            self.record(box, reader)

    def record(self, box: ChatBox, reader: AnswerReader) -> None:
        """What ``llm logs --json`` shows: where the answer came from and how it ended."""
        details = {
            "site": public_url(box.page),
            "post_id": box.post_id,
            "bot_id": box.bot_id,
            "mode": reader.mode,
            "finish_reason": reader.finish_reason,
            "id": reader.upstream_id,
            "model": reader.model,
        }
        if reader.notice:
            details["notice"] = reader.notice
        self.response.response_json = {k: v for k, v in details.items() if v is not None}
        if reader.model:
            self.response.set_resolved_model(reader.model)

    # -- what went wrong, in one sentence ------------------------------------------------

    def status_error(self, response: httpx2.Response, body: str, what: str) -> Exception:
        """The error for a page or admin-ajax answer that is not HTTP 200."""
        status = f"HTTP {response.status_code} {response.reason_phrase}"
        if is_cloudflare_challenge(response, body):
            return llm.ModelError(
                f"{self.host} answered with a Cloudflare challenge ({status}): open the "
                f"site in a browser, then save its cf_clearance cookie with 'llm keys set "
                f"{COOKIES_KEY}' and that browser's User-Agent in {USER_AGENT_ENV}."
            )
        if response.status_code == 403 and (
            "link you followed has expired" in body.lower() or body.strip() == "-1"
        ):
            return NonceRejected(status)
        if response.status_code == 400 and body.strip() == "0":
            return plain_body_error(self.host, body)
        if response.status_code in TRANSIENT_STATUSES:
            return TransientError(
                f"{what} answered {status} twice: the site is down or overloaded. Try again later."
            )
        if response.status_code == 429:
            return llm.ModelError(f"{what} is rate limiting this client ({status}). Wait a while.")
        summary = summarize_body(body)
        if response.reason_phrase and response.reason_phrase in summary:
            summary = ""  # an error page that only repeats its status
        return llm.ModelError(f"{what} answered {status}{summary}.")

    def transport_error(self, error: httpx2.HTTPError, where: str) -> llm.ModelError:
        """A failure of the connection itself, before any answer arrived."""
        if isinstance(error, httpx2.TimeoutException):
            return llm.ModelError(
                f"{where} did not answer within {self.timeout:g} s. Try again later, "
                "or wait longer with -o timeout 300."
            )
        if isinstance(error, httpx2.ProxyError):
            return llm.ModelError(sentence(f"The proxy failed: {self.describe(error)}"))
        if isinstance(error, httpx2.ConnectError):
            return llm.ModelError(sentence(f"Could not reach {where}: {self.describe(error)}"))
        if isinstance(error, (httpx2.RemoteProtocolError, httpx2.ReadError)):
            return TransientError(
                f"{where} dropped the connection twice before answering. Try again."
            )
        return llm.ModelError(sentence(f"Talking to {where} failed: {self.describe(error)}"))

    def describe(self, error: Exception) -> str:
        """An exception as a short phrase."""
        if isinstance(error, httpx2.TimeoutException):
            return f"no data for {self.timeout:g} s"
        return one_line(str(error)) or type(error).__name__

    def redact(self, text: str) -> str:
        """``text`` with every cookie value and the proxy URL's password blanked out."""
        password = urlsplit(self.proxy).password if self.proxy else None
        for secret in [*self.cookies.values(), password or ""]:
            if len(secret) >= 4:
                text = text.replace(secret, "***")
        return text


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """httpx2's default TLS settings, built once: loading the CA file costs ~30 ms."""
    return httpx2.create_ssl_context()


def advance(steps: Steps, reply: Any, error: BaseException | None) -> Step | str | None:
    """Send a step's result (or its exception) into the core; None once it has finished."""
    try:
        return steps.throw(error) if error is not None else steps.send(reply)
    except StopIteration:
        return None


# ---------------------------------------------------------------------------------------
# The drivers: the only code that does I/O
# ---------------------------------------------------------------------------------------

_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()
_loop_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict] = (
    weakref.WeakKeyDictionary()
)


def thread_lock(site: str) -> threading.Lock:
    """One lock per site, so that threads with a cold cache fetch its page once."""
    with _thread_locks_guard:
        return _thread_locks.setdefault(site, threading.Lock())


def loop_lock(site: str) -> asyncio.Lock:
    """One lock per site and event loop, so that concurrent prompts fetch a page once."""
    locks = _loop_locks.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(site, asyncio.Lock())


def close_blocking(answer: httpx2.Response | None, chunks: Generator | None) -> None:
    """Close a streamed answer and its reader, so the connection goes back cleanly."""
    if chunks is not None:
        chunks.close()
    if answer is not None:
        answer.close()


async def close_async(answer: httpx2.Response | None) -> None:
    """Close a streamed answer; when a caller abandoned the stream, the event loop may
    be closing the same connection at the same moment, which is no error."""
    if answer is not None:
        with contextlib.suppress(RuntimeError):
            await answer.aclose()


def run_blocking(exchange: Exchange) -> Iterator[str]:
    """Perform the core's steps with a blocking ``httpx2.Client``."""
    steps = exchange.steps()
    answer: httpx2.Response | None = None
    chunks: Generator[bytes, None, None] | None = None
    reply: Any = None
    error: BaseException | None = None
    with httpx2.Client(**exchange.client_settings()) as client:
        try:
            while (step := advance(steps, reply, error)) is not None:
                reply = error = None
                if isinstance(step, str):
                    yield step
                    continue
                try:
                    if isinstance(step, ReadMore):
                        reply = next(chunks, b"") if chunks else b""
                    elif isinstance(step, SendForm):
                        close_blocking(answer, chunks)
                        request = client.build_request(
                            "POST", step.url, headers=step.headers, data=step.form
                        )
                        answer = reply = client.send(request, stream=True)
                        chunks = answer.iter_bytes()
                    elif isinstance(step, FetchPage):
                        with thread_lock(step.site):
                            reply = step.cached() or step.accept(
                                client.get(
                                    step.url,
                                    headers=step.headers,
                                    follow_redirects=True,
                                )
                            )
                    elif isinstance(step, Pause):
                        time.sleep(step.seconds)
                except Exception as exc:  # handed to the core, which decides
                    error = exc
        finally:
            close_blocking(answer, chunks)
            steps.close()


async def run_async(exchange: Exchange) -> AsyncIterator[str]:
    """Perform the core's steps with an ``httpx2.AsyncClient``."""
    steps = exchange.steps()
    answer: httpx2.Response | None = None
    chunks: AsyncIterator[bytes] | None = None
    reply: Any = None
    error: BaseException | None = None
    async with httpx2.AsyncClient(**exchange.client_settings()) as client:
        try:
            while (step := advance(steps, reply, error)) is not None:
                reply = error = None
                if isinstance(step, str):
                    yield step
                    continue
                try:
                    if isinstance(step, ReadMore):
                        reply = await anext(chunks, b"") if chunks else b""
                    elif isinstance(step, SendForm):
                        await close_async(answer)
                        request = client.build_request(
                            "POST", step.url, headers=step.headers, data=step.form
                        )
                        answer = reply = await client.send(request, stream=True)
                        chunks = answer.aiter_bytes()
                    elif isinstance(step, FetchPage):
                        async with loop_lock(step.site):
                            reply = step.cached() or step.accept(
                                await client.get(
                                    step.url,
                                    headers=step.headers,
                                    follow_redirects=True,
                                )
                            )
                    elif isinstance(step, Pause):
                        await asyncio.sleep(step.seconds)
                except Exception as exc:  # handed to the core, which decides
                    error = exc
        finally:
            await close_async(answer)
            steps.close()


# ---------------------------------------------------------------------------------------
# The models
# ---------------------------------------------------------------------------------------


class _ChatgptFreeBase:
    """What the sync and async models share: identity, options and where to go."""

    model_id = MODEL_ID
    can_stream = True

    class Options(llm.Options):
        site: str | None = Field(
            default=None,
            description=(
                f"URL of a page with an AI Power chat box (default {DEFAULT_SITE}, or ${SITE_ENV})"
            ),
        )
        timeout: float | None = Field(
            default=None,
            gt=0,
            description=f"Seconds to wait for the site (default {DEFAULT_TIMEOUT:g})",
        )
        proxy: str | None = Field(
            default=None,
            description=(
                "Proxy URL, e.g. http://user:password@host:3128 (the password is never logged)"
            ),
        )

        @field_validator("site")
        @classmethod
        def _http_url(cls, value: str | None) -> str | None:
            if value is None:
                return None
            if not is_http_url(value.strip()):
                raise ValueError("site must be an http:// or https:// URL")
            return public_url(value.strip())

        @field_validator("proxy")
        @classmethod
        def _proxy_url(cls, value: str | None) -> str | None:
            if value is None:
                return None
            parts = urlsplit(value.strip())
            if parts.scheme not in ("http", "https", "socks5", "socks5h") or not parts.hostname:
                raise ValueError("proxy must be an http://, https:// or socks5:// URL")
            if parts.scheme.startswith("socks") and not importlib.util.find_spec("socksio"):
                raise ValueError("a socks5:// proxy needs: llm install 'httpx2[socks]'")
            return redact_proxy(value.strip())

    def __init__(
        self,
        model_id: str = MODEL_ID,
        site: str | None = None,
        bot_id: str | None = None,
    ) -> None:
        self.model_id = model_id
        self.site = site
        self.bot_id = bot_id

    def __str__(self) -> str:
        kind = " (async)" if isinstance(self, llm.AsyncModel) else ""
        where = f"chat box of {self.site}" if self.site else "free chat of chatgptfree.ai"
        return f"ChatgptFree{kind}: {self.model_id} ({where})"


class ChatgptFree(_ChatgptFreeBase, llm.Model):
    """The free chat of chatgptfree.ai (or any AI Power chat box) as a blocking model."""

    def execute(self, prompt, stream, response, conversation=None) -> Iterator[str]:
        yield from run_blocking(Exchange(self, prompt, response))


class AsyncChatgptFree(_ChatgptFreeBase, llm.AsyncModel):
    """The same model for asyncio programs."""

    async def execute(self, prompt, stream, response, conversation=None) -> AsyncIterator[str]:
        async for piece in run_async(Exchange(self, prompt, response)):
            yield piece


# ---------------------------------------------------------------------------------------
# Saved sites: any AI Power chat box becomes a model
# ---------------------------------------------------------------------------------------

SITES_FORMAT = 1
SITE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


@dataclass(frozen=True)
class SavedSite:
    """A site saved with ``llm chatgptfree sites add``: the model ``chatgptfree/NAME``."""

    name: str
    url: str
    bot: str | None = None

    @property
    def model_id(self) -> str:
        return f"chatgptfree/{self.name}"


class SitesFileError(llm.ModelError):
    """The saved-sites file exists but cannot be used; it is never overwritten then."""


def sites_path() -> Path:
    return state_dir() / "sites.json"


def load_sites() -> dict[str, SavedSite]:
    """The saved sites by name; raises ``SitesFileError`` for a broken file."""
    path = sites_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise SitesFileError(f"Cannot read {path}: {error.strerror}.") from None
    try:
        data = json.loads(text)
    except ValueError as error:
        raise SitesFileError(f"{path} is not valid JSON ({error}): fix it or remove it.") from None
    entries = data.get("sites") if isinstance(data, dict) else None
    if not isinstance(entries, dict) or data.get("format") != SITES_FORMAT:
        raise SitesFileError(f"{path} is not a sites file of this plugin: fix or remove it.")
    sites = {}
    for name, entry in entries.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise SitesFileError(f"{path}: the entry {name!r} has no url: fix or remove it.")
        bot = entry.get("bot")
        sites[name] = SavedSite(name, entry["url"], None if bot is None else str(bot))
    return sites


def save_sites(sites: dict[str, SavedSite]) -> None:
    entries = {
        name: {k: v for k, v in asdict(site).items() if k != "name" and v is not None}
        for name, site in sorted(sites.items())
    }
    data = json.dumps({"format": SITES_FORMAT, "sites": entries}, indent=2)
    try:
        write_private_file(sites_path(), data)
    except OSError as error:
        raise SitesFileError(f"Cannot write {sites_path()}: {error.strerror}.") from None


def checked_site_url(url: str) -> str:
    """``url`` when it is an http(s) URL with a host, else a ``click.BadParameter``."""
    if not is_http_url(url.strip()):
        raise click.BadParameter(f"{url!r} is not an http:// or https:// URL", param_hint="URL")
    parts = urlsplit(url.strip())
    return urlunsplit(parts._replace(path=parts.path or "/"))


def guess_plugin_release(page_html: str, box: dict[str, str]) -> str:
    """The AI Power release a page suggests: its asset version, else its markup."""
    version = re.search(r"gpt3-ai-content-generator/[^'\"]*\?ver=(\d+(?:\.\d+)+)", page_html)
    if version:
        return f"{version.group(1)} (from its asset URLs)"
    if "data-lead-collection" in box:
        return "1.8.91 or later (from the markup)"
    if "data-memory-limit" in box:
        return "1.8.80 or later (from the markup)"
    if "data-openai_stream_nav" in box:
        return "1.8.x (from the markup)"
    return "1.7.x or unknown (from the markup)"


def describe_box(box: dict[str, str]) -> str:
    """One chat box of a page in a few words."""
    stream = (box.get("data-openai_stream_nav") or "").strip()
    streaming = {"1": "on", "0": "off"}.get(stream, "unknown")
    kind = box["kind"]
    post, bot = box.get("data-post-id") or "?", box.get("data-bot-id") or "0"
    return f"{kind}, post {post}, bot {bot}, streaming {streaming}"


def site_message(body: str) -> str:
    """The ``msg`` of the plugin's JSON answer, or the body itself."""
    try:
        answer = json.loads(body)
    except ValueError:
        return body.strip()
    return str(answer.get("msg", body)) if isinstance(answer, dict) else body.strip()


class Probe:
    """``llm chatgptfree probe``: what a user needs to know about a site, step by step."""

    def __init__(self, url: str, bot: str | None, timeout: float) -> None:
        self.url, self.bot, self.timeout = url, bot, timeout
        self.user_agent = os.environ.get(USER_AGENT_ENV) or USER_AGENT
        self.lines: list[tuple[str, str]] = []

    def note(self, label: str, text: str) -> None:
        self.lines.append((label, text))

    def run(self, send: bool) -> bool:
        """True when the site can answer (with ``send``: when it did)."""
        cookies = parse_cookies(llm.get_key(alias=COOKIES_KEY, env=COOKIES_ENV))
        with httpx2.Client(timeout=self.timeout, cookies=cookies) as client:
            box = self.read_page(client)
            ready = box is not None and self.check_nonce(client, box)
        return ready and (not send or self.send_prompt())

    def read_page(self, client: httpx2.Client) -> ChatBox | None:
        started = time.perf_counter()
        try:
            page = client.get(
                self.url, headers=page_headers(self.user_agent, True), follow_redirects=True
            )
        except httpx2.HTTPError as error:
            self.note("Page", f"{self.url} unreachable: {one_line(str(error)) or 'timeout'}")
            return None
        took = time.perf_counter() - started
        self.note("Page", f"{public_url(str(page.url))}: HTTP {page.status_code} in {took:.2f} s")
        if is_cloudflare_challenge(page, page.text):
            self.note("Blocked", f"Cloudflare challenge: see 'llm keys set {COOKIES_KEY}'")
            return None
        boxes = find_chat_boxes(page.text)
        for number, found in enumerate(boxes, 1):
            self.note(f"Chat box {number}", describe_box(found))
        box = parse_chat_page(page.text, str(page.url), self.bot)
        if box is None:
            self.note("Chat box", "none with a nonce on this page")
            return None
        self.note("Plugin", f"AI Power {guess_plugin_release(page.text, boxes[0])}")
        return box

    def check_nonce(self, client: httpx2.Client, box: ChatBox) -> bool:
        """Post an empty message: the plugin checks the nonce first, and then refuses it."""
        started = time.perf_counter()
        try:
            check = client.post(
                box.ajax_url,
                data=build_form(box, "", client_id()),
                headers=ajax_headers(box, self.user_agent),
            )
        except httpx2.HTTPError as error:
            self.note("Nonce", f"not checked: {one_line(str(error)) or 'timeout'}")
            return False
        took = time.perf_counter() - started
        said = site_message(check.text)
        if "nothing was inputted" in said:
            PAGE_CACHE.put(self.url, box)
            self.note("Nonce", f"accepted (admin-ajax answered in {took:.2f} s)")
            return True
        if is_cloudflare_challenge(check, check.text):
            self.note("Nonce", "not checked: admin-ajax answered a Cloudflare challenge")
        elif check.status_code == 403 or is_nonce_message(said) or said == "-1":
            self.note("Nonce", f"rejected: HTTP {check.status_code} {one_line(said, 80)!r}")
        else:  # the plugin checks the nonce first: any other complaint comes after it
            self.note("Nonce", f"accepted (admin-ajax answered in {took:.2f} s)")
            self.note("Site", f"says: {one_line(said, 120) or '(nothing)'}")
        return False

    def send_prompt(self) -> bool:
        started = time.perf_counter()
        model = ChatgptFree(site=self.url, bot_id=self.bot)
        try:
            text = model.prompt("Say OK", timeout=self.timeout).text()
        except llm.ModelError as error:
            self.note("Prompt", f"failed: {error}")
            return False
        took = time.perf_counter() - started
        self.note("Prompt", f"answered {one_line(text, 60)!r} in {took:.2f} s")
        return True


# ---------------------------------------------------------------------------------------
# The hooks
# ---------------------------------------------------------------------------------------


@llm.hookimpl
def register_models(register: Callable[..., None]) -> None:
    register(ChatgptFree(), AsyncChatgptFree(), aliases=ALIASES)
    try:
        sites = load_sites()
    except SitesFileError as error:
        click.echo(f"llm-chatgptfree: saved sites ignored: {error}", err=True)
        return
    for site in sites.values():
        register(
            ChatgptFree(site.model_id, site.url, site.bot),
            AsyncChatgptFree(site.model_id, site.url, site.bot),
        )


@llm.hookimpl
def register_commands(cli: click.Group) -> None:
    @cli.group(name="chatgptfree")
    def chatgptfree_group() -> None:
        "Sites running the AI Power chat box, as models"

    @chatgptfree_group.group(name="sites")
    def sites_group() -> None:
        "Saved sites: each is a model chatgptfree/NAME"

    @sites_group.command(name="add")
    @click.argument("name")
    @click.argument("url")
    @click.option("--bot", help="Bot id of the chat box to use, when the page has several")
    def sites_add(name: str, url: str, bot: str | None) -> None:
        "Save the chat box of the page at URL as the model chatgptfree/NAME"
        if not SITE_NAME.fullmatch(name):
            raise click.BadParameter(
                "use lower-case letters, digits, '.', '_' or '-'", param_hint="NAME"
            )
        if bot is not None and not bot.isdigit():
            raise click.BadParameter("a bot id is a number", param_hint="--bot")
        sites = sites_or_exit()
        if name in sites:
            raise click.ClickException(
                f"A site named {name!r} exists already ({sites[name].url}); "
                f"remove it first with 'llm chatgptfree sites remove {name}'."
            )
        sites[name] = SavedSite(name, checked_site_url(url), bot)
        save_sites_or_exit(sites)
        click.echo(f"Saved {url} as the model {sites[name].model_id}")

    @sites_group.command(name="list")
    @click.option("json_", "--json", is_flag=True, help="Output as JSON")
    def sites_list(json_: bool) -> None:
        "List the saved sites"
        sites = sites_or_exit()
        if json_:
            click.echo(
                json.dumps([asdict(s) | {"model_id": s.model_id} for s in sites.values()], indent=2)
            )
            return
        if not sites:
            click.echo("No saved sites. Add one with 'llm chatgptfree sites add NAME URL'.")
        for site in sites.values():
            bot = f" (bot {site.bot})" if site.bot else ""
            click.echo(f"{site.model_id}: {site.url}{bot}")

    @sites_group.command(name="remove")
    @click.argument("name")
    def sites_remove(name: str) -> None:
        "Forget the saved site NAME"
        sites = sites_or_exit()
        if name not in sites:
            raise click.ClickException(unknown_site(name, sites))
        PAGE_CACHE.forget(sites.pop(name).url)
        save_sites_or_exit(sites)
        click.echo(f"Removed chatgptfree/{name}")

    @chatgptfree_group.command(name="probe")
    @click.argument("url")
    @click.option("--bot", help="Bot id of the chat box to check")
    @click.option("--send", is_flag=True, help="Also send one tiny prompt")
    @click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds")
    def probe(url: str, bot: str | None, send: bool, timeout: float) -> None:
        "Check whether the page at URL has a working AI Power chat box"
        probe = Probe(checked_site_url(url), bot, timeout)
        ready = probe.run(send)
        width = max(len(label) for label, _ in probe.lines)
        for label, text in probe.lines:
            click.echo(f"{label:<{width}}  {text}")
        click.echo(
            f"{'Verdict':<{width}}  "
            + ("ready: this site can answer" if ready else "not usable as it is")
        )
        if not ready:
            raise SystemExit(1)

    @chatgptfree_group.group(name="cache")
    def cache_group() -> None:
        "The scraped chat boxes, kept for ten hours"

    @cache_group.command(name="clear")
    @click.argument("name", required=False)
    def cache_clear(name: str | None) -> None:
        "Forget the scraped values of every site, or of NAME (a saved site or a URL)"
        dropped = PAGE_CACHE.forget(None if name is None else site_url_for(name))
        click.echo(f"Forgot {dropped} scraped chat box{'es' if dropped != 1 else ''}")


def sites_or_exit() -> dict[str, SavedSite]:
    """The saved sites, or a one-line error naming the broken file."""
    try:
        return load_sites()
    except SitesFileError as error:
        raise click.ClickException(str(error)) from None


def save_sites_or_exit(sites: dict[str, SavedSite]) -> None:
    try:
        save_sites(sites)
    except SitesFileError as error:
        raise click.ClickException(str(error)) from None


def unknown_site(name: str, sites: dict[str, SavedSite]) -> str:
    known = ", ".join(sites) or "none yet"
    return f"No saved site named {name!r} (saved: {known})."


def site_url_for(name: str) -> str:
    """The page URL of a saved site, of the built-in model, or ``name`` itself as a URL."""
    if name in ("chatgptfree", MODEL_ID):
        return os.environ.get(SITE_ENV) or DEFAULT_SITE
    if "://" in name:
        return checked_site_url(name)
    sites = sites_or_exit()
    if name not in sites:
        raise click.ClickException(unknown_site(name, sites))
    return sites[name].url
