"""A local WordPress site running the AI Power chat box, for the tests (stdlib only).

It serves the real captured pages of tests/samples (rewritten to its own address and
nonce) and answers ``/wp-admin/admin-ajax.php`` the way the captures and
shared/protocol.md show for plugin releases 1.8.79 to 1.8.96: streamed or JSON answers,
both generations of nonce rejection, admin-ajax's ``0``, the plugin's error events, and a
set of faults (Cloudflare, 5xx, resets, cuts, stalls…) to play on demand.

Its "model" answers ``Hello from the fake upstream. You said: <last user message>``, like
the stand-in behind the captures, and every request and what the model saw are recorded.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import html
import json
import re
import secrets
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

SAMPLES = Path(__file__).parent / "samples"
CAPTURED_ORIGIN = "127.0.0.1:8088"
CAPTURED_NONCE = "e302406566"
ACTIONS = ("wpaicg_chat_shortcode_message", "wpaicg_chatbox_message")
CUSTOM_BOT = "4"
WIDGET_MODEL = "gpt-3.5-turbo"
GREETING = (
    "Converse as if you were an AI assistant. Answer the question as truthfully as "
    "possible using the provided context. Tone: Friendly.\n, Current context: "
    '"{title}\n{excerpt}"'
)
POSTS = {"6": ("Chat", "Chat page with the default shortcode."),
         "7": ("Bot", "Chat page with a custom bot.")}  # fmt: skip
PLAIN_GREETING = (
    "Converse as if you were an AI assistant. Answer the question as truthfully as "
    "possible using the provided text. Tone: Friendly"
)
UPSTREAM_401 = (
    "Incorrect API key provided: sk-harn*****. You can find your API key at "
    "https://platform.openai.com/account/api-keys."
)
BANNED = {
    "ip_banned": ("You are not allowed to access this feature.", "ipBanned"),
    "word_banned": (
        "Your message contains prohibited words. Please modify your message and try again.",
        "messageFlagged",
    ),
}
ADMIN_AJAX_HEADERS = {
    "X-Robots-Tag": "noindex",
    "X-Content-Type-Options": "nosniff",
    "Expires": "Wed, 11 Jan 1984 05:00:00 GMT",
    "Cache-Control": "no-cache, must-revalidate, max-age=0",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Frame-Options": "SAMEORIGIN",
}
CLOUDFLARE_PAGE = (
    '<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title></head>'
    '<body><div id="cf-please-wait">Checking your browser before accessing.</div>'
    "<script>window._cf_chl_opt={cType: 'managed'};</script></body></html>"
)


def error_page(status: int, reason: str) -> str:
    return (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )


def php_json(value: object) -> bytes:
    """``json_encode`` with PHP's default flags: ``\\/`` and ``\\uXXXX`` escapes."""
    return json.dumps(value, separators=(",", ":")).replace("/", "\\/").encode()


def esc_html(text: str) -> str:
    return html.escape(text, quote=True).replace("&#x27;", "&#039;")


def sanitize_text_field(text: str, keep_newlines: bool = False) -> str:
    """WordPress's ``_sanitize_text_fields`` (protocol §4.3); ``keep_newlines`` makes it
    ``sanitize_textarea_field``."""
    if "<" in text:
        # wp_pre_kses_less_than: a "<" that opens no tag is escaped up to the next "<"
        # or ">" (or the end), quotes included; then every tag is stripped
        text = re.sub(
            r"<[^>]*?((?=<)|>|$)",
            lambda m: m.group(0) if ">" in m.group(0) else esc_html(m.group(0)),
            text,
        )
        text = re.sub(r"<[^>]*>", "", text)
    if not keep_newlines:
        text = re.sub(r"[\r\n\t ]+", " ", text)
    text = text.strip()
    while True:
        stripped = re.sub(r"%[a-fA-F0-9]{2}", "", text)
        if stripped == text:
            break
        text = stripped
    return re.sub(r" +", " ", text).strip()


def magic_quotes(text: str) -> str:
    """``wp_magic_quotes``: a backslash before every quote and backslash."""
    return re.sub(r"(['\"\\\\])", r"\\\1", text)


def legacy_prompt(messages: list[dict]) -> str:
    """The prompt the plugin builds for a legacy completion model (as captured: the
    greeting twice, then the question)."""
    return f"{messages[0]['content']}{messages[0]['content']}\n{messages[-1]['content']}\n"


def release_tuple(release: str) -> tuple[int, ...]:
    return tuple(int(part) for part in release.split("."))


@dataclass
class Recorded:
    """One request as the site saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    form: dict[str, str]
    body: bytes
    time: float = field(default_factory=time.time)
    proxied: bool = False  # sent to the site as to a proxy (absolute-form target)


class QuietServer(ThreadingHTTPServer):
    """A threaded HTTP server that does not print clients hanging up on it."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class AIPowerSite:
    """A WordPress site with the AI Power chat box on 127.0.0.1 (random port)."""

    def __init__(self, release: str = "1.8.96", port: int = 0) -> None:
        self.release = release
        self._port = port
        self.stream = True
        self.bot_stream = False
        self.legacy_model = False
        self.model = "gpt-4o-mini-2024-07-18"
        self.reply: Callable[[list[dict]], str] | None = None
        self.nonce = secrets.token_hex(5)
        self._valid_nonces = {self.nonce}
        self.page_nonce_override: str | None = None
        self.page_variant = "normal"
        self.chunk_size: int | None = None
        self.chunk_delay = 0.0
        self.first_byte_delay = 0.0
        self.page_delay = 0.0
        self.slow_seconds = 5.0
        self.big_answer_bytes = 10_000_000
        self.answer_deltas: int | None = None
        self.faults: list[str] = []
        self.fault: str | None = None
        self.page_faults: list[str] = []
        self.requests: list[Recorded] = []
        self.upstream: list[list[dict]] = []
        self._replay: Path | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ids = 0

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> AIPowerSite:
        site = self

        class Handler(SiteHandler):
            owner = site

        self._server = QuietServer(("127.0.0.1", self._port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="aipower-site",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> AIPowerSite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "the site is not running"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def chat_url(self) -> str:
        return self.base_url + "/chat/"

    @property
    def bot_url(self) -> str:
        return self.base_url + "/bot/"

    @property
    def ajax_url(self) -> str:
        return self.base_url + "/wp-admin/admin-ajax.php"

    # -- what was seen ---------------------------------------------------------------

    @property
    def page_gets(self) -> int:
        return sum(1 for r in self.requests if r.method == "GET" and "admin-ajax" not in r.path)

    @property
    def ajax_posts(self) -> int:
        return sum(1 for r in self.requests if r.path.endswith("/admin-ajax.php"))

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.upstream.clear()

    # -- knobs -----------------------------------------------------------------------

    def rotate_nonce(self) -> str:
        """A new tick: a new nonce becomes the only valid one."""
        self.nonce = secrets.token_hex(5)
        self._valid_nonces = {self.nonce}
        return self.nonce

    def replay_next(self, response_http: Path | str) -> None:
        """Answer the next admin-ajax request with a captured response, verbatim."""
        self._replay = Path(response_http)

    def _next_fault(self) -> str | None:
        with self._lock:
            return self.faults.pop(0) if self.faults else self.fault

    def _next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    def _record(self, request: Recorded) -> None:
        with self._lock:
            self.requests.append(request)

    def wait(self, seconds: float) -> None:
        """Sleep, but wake up when the site stops."""
        self._stopping.wait(seconds)

    # -- pages -----------------------------------------------------------------------

    def page_html(self, path: str) -> str:
        nonce = self.page_nonce_override or self.nonce
        chat = path.rstrip("/") in ("", "/chat")
        if self.page_variant != "normal" and chat:
            return self._variant_page(nonce)
        name = "page-chat.html" if chat else "page-bot.html"
        page = (SAMPLES / self.release / name).read_text(encoding="utf-8")
        page = page.replace(CAPTURED_ORIGIN, f"127.0.0.1:{self.port}")
        page = page.replace(CAPTURED_NONCE, nonce)
        streams = self.stream if chat else self.bot_stream
        return re.sub(
            r'data-openai_stream_nav="[01]"',
            f'data-openai_stream_nav="{int(streams)}"',
            page,
        )

    def _variant_page(self, nonce: str) -> str:
        base = self.base_url
        boxes = {
            "no_chatbox": "<p>Just a blog post, no chat here.</p>",
            "minified": (
                f"<div class=wpaicg-chat-shortcode data-nonce={nonce} data-post-id=6 "
                f"data-url={base}/chat data-bot-id=0 data-openai_stream_nav={int(self.stream)}"
                " data-type=shortcode><div class=wpaicg-chat-shortcode-content></div></div>"
            ),
            "entities": (
                f"<div data-type = 'shortcode' data-bot-id = '0' data-url = "
                f"'{base}/chat?x=1&amp;y=2' class = 'wpaicg-chat-shortcode' "
                f"data-post-id = '6'\n data-nonce = '{nonce}'></div>"
            ),
            "several": (
                f'<div class="wpaicg-chat-shortcode" data-nonce="{nonce}" '
                f'data-post-id="6" data-url="{base}/chat" data-bot-id="{CUSTOM_BOT}" '
                'data-openai_stream_nav="0" data-type="shortcode"></div>\n'
                f'<div class="wpaicg-chat-shortcode" data-nonce="{nonce}" '
                f'data-post-id="6" data-url="{base}/chat" data-bot-id="0" '
                'data-openai_stream_nav="1" data-type="shortcode"></div>'
            ),
            "widget_only": (
                f'<div class="wpaicg-chatbox wpaicg_chat_widget" data-nonce="{nonce}" '
                f'data-post-id="6" data-url="{base}/chat" data-bot-id="0" '
                'data-type="widget"></div>'
            ),
            "params_only": (
                f'<div class="wpaicg-chat-shortcode" data-post-id="6" '
                f'data-url="{base}/chat" data-bot-id="0" data-type="shortcode"></div>'
                "<script>var wpaicgParams = "
                + json.dumps(
                    {"ajax_url": f"{base}/wp-admin/admin-ajax.php", "search_nonce": nonce}
                ).replace("/", "\\/")  # fmt: skip
                + ";</script>"
            ),
        }
        return (
            "<!DOCTYPE html><html><head><title>Chat</title>"
            "<style>.wpaicg-chat-shortcode{display:block}</style></head><body>"
            f"{boxes[self.page_variant]}</body></html>"
        )

    # -- admin-ajax ------------------------------------------------------------------

    def answer(self, handler: SiteHandler, request: Recorded) -> None:
        if self._replay is not None:
            capture, self._replay = self._replay, None
            return handler.replay(capture)
        if self.first_byte_delay:
            time.sleep(self.first_byte_delay)
        fields = {**request.query, **request.form}  # $_REQUEST: POST wins
        if fields.get("action") not in ACTIONS:
            return handler.send("400 Bad Request", b"0", "text/html; charset=UTF-8", close=True)
        fault = self._next_fault()
        if fault and handler.play_transport_fault(fault):
            return None
        if fields.get("_wpnonce", "") not in self._valid_nonces:
            return self._reject_nonce(handler, request)
        if fault == "no_ai":
            return handler.send_json({"status": "error", "msg": "Unable to initialize "
                                      "the AI instance. Please make sure the API key is "
                                      "valid."})  # fmt: skip
        posted = fields if release_tuple(self.release) <= (1, 8, 85) else request.form
        message = self._sanitized(posted.get("message", ""))
        bot = fields.get("bot_id", "0")
        streams = self.bot_stream if bot == CUSTOM_BOT else self.stream
        if fault in BANNED and not streams:
            return handler.send_json({"status": "error", "msg": BANNED[fault][0]})
        if fault == "token_limit":
            return self._token_limit(handler, streams)
        history = self._history(fields.get("wpaicg_chat_history", ""))
        if not message:
            return handler.send_json(
                {"status": "error", "msg": "It appears that nothing was inputted."}
            )
        messages = [
            {"role": "user", "content": self._greeting(fields.get("post_id", ""))},
            *history,
            {"role": "user", "content": message},
        ]
        seen = [{"prompt": legacy_prompt(messages)}] if self.legacy_model else messages
        with self._lock:
            self.upstream.append(seen)
        answer = self._answer_text(messages, fault)
        if not streams:
            return self._json_answer(handler, messages, answer, fault)
        widget = fields["action"] == "wpaicg_chatbox_message"
        model = WIDGET_MODEL if widget else self.model  # the widget's own default settings
        return handler.stream(self._frames(messages, answer, fault, model), fault, self)

    def _reject_nonce(self, handler: SiteHandler, request: Recorded) -> None:
        if release_tuple(self.release) <= (1, 8, 85):
            return handler.send_json({"status": "error", "msg": "Nonce verification failed"})
        body = "The link you followed has expired."
        referer = request.headers.get("referer")
        if referer:
            body += f'</p><p><a href="{referer}">Please try again.</a>'
        return handler.send("403 Forbidden", body.encode(), "text/html; charset=UTF-8")

    def _sanitized(self, message: str) -> str:
        release = release_tuple(self.release)
        if release <= (1, 8, 90):
            return sanitize_text_field(magic_quotes(message))
        if release <= (1, 8, 95):
            return sanitize_text_field(message)
        return message

    def _history(self, raw: str) -> list[dict]:
        """``wpaicg_chat_history`` as the 1.8 handler reads it (protocol §5.2)."""
        textarea = release_tuple(self.release) >= (1, 8, 91)
        text = sanitize_text_field(raw, keep_newlines=textarea).replace("\\", "")
        try:
            items = json.loads(text)
        except ValueError:
            return []
        if not isinstance(items, list):
            return []
        messages = []
        for item in items:
            entry = item.get("text", "") if isinstance(item, dict) else item
            if not isinstance(entry, str):
                continue
            entry = entry.strip()
            if entry.startswith("Human: "):
                messages.append({"role": "user", "content": entry[7:]})
            elif content := entry.replace("AI: ", "").strip():
                messages.append({"role": "assistant", "content": content})
        return messages

    def _greeting(self, post_id: str) -> str:
        if post_id in POSTS:
            title, excerpt = POSTS[post_id]
            return GREETING.format(title=title, excerpt=excerpt)
        return PLAIN_GREETING

    def _answer_text(self, messages: list[dict], fault: str | None) -> str:
        if fault == "big":
            word = "lorem ipsum dolor sit amet " * 37  # 999 characters
            return word * max(1, self.big_answer_bytes // len(word))
        if self.answer_deltas is not None:
            return "".join(f" w{i}" for i in range(self.answer_deltas))
        if self.reply is not None:
            return self.reply(messages)
        if self.legacy_model:
            ending = legacy_prompt(messages).rstrip()[-60:]
            return f" Hello from the fake upstream. Prompt ended with: {ending}"
        return f"Hello from the fake upstream. You said: {messages[-1]['content']}"

    def _json_answer(self, handler, messages, answer: str, fault: str | None) -> None:
        greeting = messages[0]["content"]
        if fault in ("upstream_401", "upstream_429"):
            return handler.send_json(
                {
                    "status": "error",
                    "msg": UPSTREAM_401,
                    "greeting_message": greeting,
                    "log": False,
                }  # fmt: skip
            )
        data = "" if fault == "empty" else answer
        return handler.send_json(
            {
                "status": "success",
                "msg": "Something went wrong",
                "greeting_message": greeting,
                "data": data,
                "log": False,
            }  # fmt: skip
        )

    def _token_limit(self, handler: SiteHandler, streams: bool) -> None:
        event = {"msg": "You have reached your token limit.", "tokenLimitReached": True}
        if not streams:
            return handler.send_json(event)
        frames = [b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"]
        return handler.stream(frames, None, self)

    def _frames(
        self, messages: list[dict], answer: str, fault: str | None, model: str
    ) -> list[bytes]:
        """The SSE body, frame by frame."""
        chunk_id = self._next_id()
        legacy = self.legacy_model

        def chunk(content: str | None, finish: str | None = None, role: bool = False):
            if legacy:
                obj = {"id": f"cmpl-fake{chunk_id:06d}", "object": "text_completion",
                       "created": 1727000000, "model": "gpt-3.5-turbo-instruct",
                       "choices": [{"text": content or "", "index": 0, "logprobs": None,
                                    "finish_reason": finish}]}  # fmt: skip
            else:
                delta: dict = {}
                if role:
                    delta = {"role": "assistant", "content": "", "refusal": None}
                elif content is not None:
                    delta = {"content": content}
                obj = {"id": f"chatcmpl-fake{chunk_id:06d}", "object": "chat.completion.chunk",
                       "created": 1727000000, "model": model,
                       "system_fingerprint": "fp_fake",
                       "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                    "finish_reason": finish}]}  # fmt: skip
            text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
            return f"data: {text}\n\n".encode()

        def words(text: str) -> list[str]:
            if fault == "big":
                return [text[i : i + 999] for i in range(0, len(text), 999)]
            first, *rest = text.split(" ")  # the stand-in model streams word by word
            return ([first] if first else []) + [f" {word}" for word in rest]

        def error_words(text: str) -> list[bytes]:
            frames = [
                f'event: message\ndata: {{"choices":[{{"delta":{{"content":"{w}"}}}}]}}\n\n'
                .encode()
                for w in words(text)
            ]  # fmt: skip
            return frames + [b'data: {"choices":[{"finish_reason":"stop"}]}\n\n']

        tokens = words(answer)
        frames = [] if legacy else [chunk(None, role=True)]
        if fault in BANNED:
            event = {"msg": BANNED[fault][0], BANNED[fault][1]: True}
            frames.insert(0, b"data: " + json.dumps(event).encode() + b"\n\n")
        if fault in ("upstream_401", "upstream_429"):
            return error_words(UPSTREAM_401) * 2 + self._trailing(messages, "")
        if fault == "limited":
            return error_words("Something went wrong.")[:-1] + [b"data: [LIMITED]\n\n"]
        if fault in ("upstream_cut", "stream_error"):
            frames += [chunk(t) for t in tokens[:2]]
            if fault == "stream_error":
                frames.append(
                    b'data: {"error":{"message":"The server had an error while processing'
                    b' your request. Sorry about that!","type":"server_error","param":null,'
                    b'"code":null}}\n\n'
                )
            return frames + self._trailing(messages, "".join(tokens[:2]))
        if fault == "empty":
            tokens = []
        for token in tokens:
            frames.append(chunk(token))
            if fault == "openrouter":
                frames.append(b": OPENROUTER PROCESSING\n\n")
        if fault == "invalid_utf8":
            frames.insert(2, chunk("\x00BAD\x00").replace(b"\\u0000BAD\\u0000", b"\xff\xfe"))
        frames.append(chunk(None, finish="stop") if not legacy else chunk("", "stop"))
        frames.append(b"data: [DONE]\n\n")
        return frames + self._trailing(messages, answer)

    def _trailing(self, messages: list[dict], data: str) -> list[bytes]:
        """The JSON object releases up to 1.8.79 glue after the stream."""
        if release_tuple(self.release) > (1, 8, 79):
            return []
        return [php_json({"status": "success", "msg": "Something went wrong",
                          "greeting_message": messages[0]["content"], "data": data,
                          "log": False})]  # fmt: skip


class SiteHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; every request goes to the owning ``AIPowerSite``."""

    owner: AIPowerSite
    protocol_version = "HTTP/1.1"
    server_version = "Apache/2.4.71"
    sys_version = "(Debian)"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        request = self._read_request()
        self.owner._record(request)
        if request.path.endswith("/wp-admin/admin-ajax.php"):
            return self.owner.answer(self, request)
        return self._page(request)

    def _read_request(self) -> Recorded:
        target = urlsplit(self.path)
        proxied = bool(target.scheme)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        return Recorded(
            method=self.command,
            path=target.path,
            query=dict(parse_qsl(target.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
            form=self._form(body),
            body=body,
            proxied=proxied,
        )

    def _form(self, body: bytes) -> dict[str, str]:
        kind = self.headers.get("Content-Type", "")
        if kind.startswith("application/x-www-form-urlencoded"):
            return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if kind.startswith("multipart/form-data"):
            parser = email.parser.BytesParser(policy=email.policy.HTTP)
            message = parser.parsebytes(f"Content-Type: {kind}\r\n\r\n".encode() + body)
            return {
                part.get_param("name", header="content-disposition"): part.get_content()
                for part in message.iter_parts()
            }
        return {}

    def _page(self, request: Recorded) -> None:
        owner = self.owner
        with owner._lock:
            fault = owner.page_faults.pop(0) if owner.page_faults else None
        variant = owner.page_variant
        if variant.startswith("cloudflare_"):
            fault = variant
        if owner.page_delay:
            owner.wait(owner.page_delay)
        if fault and self.play_transport_fault(fault):
            return
        if request.path.rstrip("/") not in ("", "/chat", "/bot"):
            page = error_page(404, "Not Found").encode()
            return self.send("404 Not Found", page, "text/html; charset=UTF-8")
        page = owner.page_html(request.path).encode()
        return self.send("200 OK", page, "text/html; charset=UTF-8", extra={})

    # -- writing answers -------------------------------------------------------------

    def send(
        self,
        status: str,
        body: bytes,
        content_type: str,
        close: bool = False,
        extra: dict[str, str] | None = None,
    ) -> None:
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason)
        headers = ADMIN_AJAX_HEADERS if extra is None else extra
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.send_header("Content-Type", content_type)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, value: object) -> None:
        self.send("200 OK", php_json(value), "application/json; charset=UTF-8")

    def stream(self, frames: list[bytes], fault: str | None, owner: AIPowerSite) -> None:
        """Send an SSE body with chunked encoding, as the plugin's curl callback does."""
        self.send_response(200, "OK")
        for name, value in ADMIN_AJAX_HEADERS.items():
            if name != "Cache-Control":
                self.send_header(name, value)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Accel-Buffering", "no")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Content-Type", "text/event-stream;charset=UTF-8")
        self.end_headers()
        if fault == "cut":
            return self._write_then_reset(frames[:3])
        if fault == "stall":
            self._write_pieces(frames[:3], owner)
            owner.wait(owner.slow_seconds)
            return self._write_then_reset([])
        self._write_pieces(frames, owner)
        self.wfile.write(b"0\r\n\r\n")

    def _write_pieces(self, frames: list[bytes], owner: AIPowerSite) -> None:
        body = b"".join(frames)
        size = owner.chunk_size or max(len(body), 1)
        for start in range(0, len(body), size):
            piece = body[start : start + size]
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            if owner.chunk_delay:
                owner.wait(owner.chunk_delay)

    def _write_then_reset(self, frames: list[bytes]) -> None:
        for frame in frames:
            self.wfile.write(f"{len(frame):x}\r\n".encode() + frame + b"\r\n")
        if frames:  # let the client read them: a reset discards what it has not read
            self.owner.wait(0.2)
        self.reset()

    def reset(self) -> None:
        """Close the connection abruptly (RST), as a crashed server or proxy would."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    def play_transport_fault(self, fault: str) -> bool:
        """Play a fault that is not the plugin's own doing; False if ``fault`` is not one."""
        owner = self.owner
        if fault.startswith("cloudflare_"):
            status = "403 Forbidden" if fault.endswith("403") else "503 Service Unavailable"
            self.send(status, CLOUDFLARE_PAGE.encode(), "text/html; charset=UTF-8",
                      extra={"cf-mitigated": "challenge", "Server": "cloudflare"})  # fmt: skip
        elif fault.startswith("http_"):
            code = int(fault[5:])
            reason = {500: "Internal Server Error", 502: "Bad Gateway",
                      503: "Service Unavailable", 504: "Gateway Timeout"}[code]  # fmt: skip
            self.send(f"{code} {reason}", error_page(code, reason).encode(), "text/html")
        elif fault == "wp_critical":
            page = (
                "<!DOCTYPE html><html><head><title>WordPress &rsaquo; Error</title></head>"
                "<body><p>There has been a critical error on this website.</p></body></html>"
            )
            self.send("500 Internal Server Error", page.encode(), "text/html; charset=UTF-8")
        elif fault == "reset":
            self.reset()
        elif fault == "slow":
            owner.wait(owner.slow_seconds)
            self.reset()
        elif fault == "zero_200":
            self.send("200 OK", b"0", "text/html; charset=UTF-8")
        elif fault == "echo_cookie":
            said = f"Bad request from a client with cookies {self.headers.get('Cookie')}"
            self.send("500 Internal Server Error", said.encode(), "text/plain")
        else:
            return False
        return True

    def replay(self, capture: Path) -> None:
        """Send a captured response: its status, headers and body."""
        raw = capture.read_bytes()
        head, separator, body = raw.partition(b"\r\n\r\n")
        if not separator:
            head, _, body = raw.partition(b"\n\n")
        lines = head.decode().splitlines()
        _, code, reason = lines[0].split(" ", 2)
        self.send_response(int(code), reason)
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(": ")
            if name.lower() in ("date", "server", "content-length", "connection"):
                continue
            chunked |= name.lower() == "transfer-encoding"
            self.send_header(name, value)
        if not chunked:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if chunked:
            if body:
                self.wfile.write(f"{len(body):x}\r\n".encode() + body + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(body)


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


def main() -> None:
    """``python -m tests.aipower_site``: serve the local site until interrupted."""
    import argparse

    parser = argparse.ArgumentParser(description="A local AI Power chat box site.")
    parser.add_argument("--port", type=int, default=8088)
    parser.add_argument(
        "--release", default="1.8.96", choices=["1.8.79", "1.8.85", "1.8.91", "1.8.96"]
    )
    arguments = parser.parse_args()
    with AIPowerSite(arguments.release, port=arguments.port) as site:
        print(
            f"AI Power {arguments.release} chat box at {site.chat_url} (custom bot: {site.bot_url})"
        )
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
