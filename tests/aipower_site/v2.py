"""The 2.x ("AIPKit") chat protocol of releases 2.3 and 2.4.71, per
``shared/protocol-2x.md`` and the captures of ``tests/samples/2.3`` and ``2.4.71``.

A streamed message is two requests: step 1 ``aipkit_cache_sse_message`` (POST) stores the
message under a one-time ``cache_key``; step 2 ``aipkit_frontend_chat_stream`` (GET) sends
it to the model and streams the answer as SSE. The site keeps the conversation (per bot,
``session_id`` and ``conversation_uuid``) and gives the model its earlier turns.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import secrets
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from . import model, providers
from .faults import Fault
from .http import Recorded, Reply, parse_form
from .providers import frame
from .wp import (
    ADMIN_AJAX_HEADERS,
    CRITICAL_ERROR,
    HTML,
    absint,
    ajax_headers,
    ajax_reply,
    json_reply,
    kses_post,
    sanitize_key,
    sanitize_text_field,
    strip_all_tags,
    uniqid,
)

if TYPE_CHECKING:
    from . import AIPowerSite

CACHE = "aipkit_cache_sse_message"  # step 1
STREAM = "aipkit_frontend_chat_stream"  # step 2
MESSAGE = "aipkit_frontend_chat_message"  # the non-stream message, up to 2.4.0
NONCE = "aipkit_get_frontend_chat_nonce"  # from 2.3.41
HISTORY = "aipkit_get_conversation_history"
Thread = tuple[int, str, str]  # a conversation: (bot id, session_id, conversation_uuid)
CONCERNS = {
    CACHE: frozenset({"cache", "any"}),
    STREAM: frozenset({"stream", "chat", "any"}),
    MESSAGE: frozenset({"chat", "any"}),
    NONCE: frozenset({"nonce", "any"}),
    HISTORY: frozenset({"any"}),
}
KEY_TTL = 60
MAX_IMAGES = 4
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
XAI_IMAGES = "xAI image analysis supports JPG and PNG images only."
PADDING = b":" + b" " * 4096 + b"\n\n"
DONE = b'event: done\ndata: {"finished":true}\n\n'
SYSTEM = "You are a helpful AI Assistant. Please be friendly. Today's date is {date}."
NOT_PERMITTED = "This domain is not permitted to access the chatbot."
QUOTA_TEXT = "You have reached your quota for this period."
REFUSALS = {  # fault -> (text, HTTP status of the 2.3 non-stream call)
    Fault.GUEST_DISABLED: ("Access disabled for guests.", 429),
    Fault.QUOTA: (QUOTA_TEXT, 429),
    Fault.TOKEN_LIMIT: (QUOTA_TEXT, 429),
    Fault.IP_BANNED: ("Access from your IP address has been blocked.", 403),
    Fault.WORD_BANNED: (
        "Sorry, your message could not be sent as it contains prohibited words.",
        400,
    ),
    Fault.FLAGGED: (
        "Your message was flagged by the moderation system and could not be sent.",
        400,
    ),
}
MODEL_FAILURES = {
    Fault.STREAM_ERROR: f"{model.SERVER_ERROR} (Code: server_error)",
    Fault.RESPONSE_FAILED: f" (Error: {model.SERVER_ERROR})",
    Fault.UPSTREAM_CUT: "Connection Error: transfer closed with outstanding read data remaining",
}
TIMED_OUT = "Connection Error: Operation timed out after 120000 milliseconds with 0 bytes received"
INCOMPLETE = " (Incomplete: max_output_tokens)"
CITATIONS = [{"type": "url_citation", "url": "https://example.com/source", "title": "Example"}]


@dataclass
class Bot:
    """A published ``aipkit_chatbot``: its label (``headerName``), model and provider."""

    label: str
    model: str = "gpt-4o-mini"
    provider: str = "OpenAI"
    max_messages: int = 15
    api: str | None = None  # providers setup: the model API behind it (``providers.py``)
    web_search: bool = False  # allowWebSearchTool
    google_grounding: bool = False  # allowGoogleSearchGrounding
    image_upload: bool = False  # imageUploadEnabledUI (the page's; the server ignores it)


def default_bots(release: str) -> dict[int, Bot]:
    if release == "2.3":
        return {4: Bot("Default"), 8: Bot("Second Bot", "gpt-4.1-nano")}
    return {4: Bot("Customer Support"), 5: Bot("Second Bot", "gpt-4.1-nano")}


CHATGPTFREE_BOTS = {
    25865: Bot("GPT-4o Mini", "gpt-4o-mini", "OpenAI"),
    25871: Bot("GPT-5 Nano", "gpt-5-nano", "OpenAI"),
    25874: Bot("Gemini", "gemini-2.5-flash", "Google"),
    25873: Bot("DeepSeek", "deepseek-chat", "DeepSeek"),
    25875: Bot("Claude", "claude-3-5-haiku-latest", "Claude"),
    25872: Bot("Grok", "grok-3-mini", "xAI"),
    25870: Bot("Llama", "meta-llama/llama-4-maverick", "OpenRouter"),
    25869: Bot("Qwen", "qwen/qwen3-30b-a3b", "OpenRouter"),
    29624: Bot("Perplexity", "perplexity/sonar", "OpenRouter"),
}


def provider_bots() -> dict[int, Bot]:
    """chatgptfree.ai's nine bots with their APIs and the switches their page shows."""
    images, grounding, no_search = {25865, 25874, 25875}, {25874}, {25874, 25873}
    return {
        bot_id: Bot(bot.label, bot.model, bot.provider, api=providers.API_OF[bot.provider],
                    web_search=bot_id not in no_search, google_grounding=bot_id in grounding,
                    image_upload=bot_id in images)
        for bot_id, bot in CHATGPTFREE_BOTS.items()
    }  # fmt: skip


@dataclass(frozen=True)
class Features:
    """What a 2.x release does differently (``protocol-2x.md`` §1.3)."""

    version: tuple[int, ...]

    def since(self, *version: int) -> bool:
        return self.version >= version

    @property
    def actions(self) -> tuple[str, ...]:
        actions = [CACHE, STREAM]
        actions += [MESSAGE] if not self.since(2, 4, 1) else []
        actions += [NONCE] if self.since(2, 3, 41) else []
        actions += [HISTORY] if self.since(2, 4) else []
        return tuple(actions)

    @property
    def stream_nonce_error(self) -> str:
        if self.since(2, 3, 20):
            return "Security check failed. Please refresh the page and try again."
        return "Security check failed (nonce)."


@dataclass
class Cached:
    message: str
    client_id: str | None
    images: list[dict] | None
    expires: float


@dataclass
class Outcome:
    """What the stand-in model did: frames to send, and the reply the site stores."""

    frames: list[bytes] = field(default_factory=list)
    stored: str = ""
    failed: bool = False
    response_id: str | None = None
    payload: dict | None = None  # what the model API received (providers setup)


def preflight(request: Recorded) -> Reply:
    """``OPTIONS``: 200, empty, permissive CORS headers (the CORS manager's preflight)."""
    cors = [
        ("Access-Control-Allow-Origin", request.headers.get("origin", "*")),
        ("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
        ("Access-Control-Allow-Headers", "Content-Type, X-Requested-With, Cache-Control"),
        ("Access-Control-Max-Age", "600"),
    ]
    return ajax_reply(200, b"", HTML, headers=[*ADMIN_AJAX_HEADERS, *cors])


class V2:
    """Answers the 2.x admin-ajax actions for an ``AIPowerSite``."""

    def __init__(self, site: AIPowerSite) -> None:
        self.site = site
        self.features = Features(tuple(int(part) for part in site.release.split(".")))
        self.actions = self.features.actions
        self.cache: dict[str, Cached] = {}
        self.conversations: dict[Thread, list[dict]] = {}
        self.usage: dict[tuple[int, str], int] = {}

    def concerns(self, action: str) -> frozenset[str]:
        return CONCERNS[action]

    def answer(self, request: Recorded, action: str, fault: Fault | None) -> Reply:
        handler = {CACHE: self.cache_step, STREAM: self.stream_step, MESSAGE: self.message,
                   NONCE: self.refresh_nonce, HISTORY: self.history}[action]  # fmt: skip
        return handler(request, fault)

    # -- small requests ----------------------------------------------------------------

    def refresh_nonce(self, request: Recorded, fault: Fault | None) -> Reply:
        if self._cross_origin(request, request.fields, fault):
            return self._json_error(403, NOT_PERMITTED, "cors_denied")
        return json_reply({"success": True, "data": {"nonce": self.site.nonce}})

    def cache_step(self, request: Recorded, fault: Fault | None) -> Reply:
        form = request.form  # POST fields only
        checks_origin = self.features.since(2, 3, 31) or fault == Fault.CORS_DENIED
        if checks_origin and self._cross_origin(request, form, fault):
            return self._json_error(403, NOT_PERMITTED, "cors_denied")
        if fault == Fault.CACHE_NONCE or not self.site.nonce_ok(
            sanitize_key(form.get("_ajax_nonce", ""))
        ):
            return self._json_error(
                403,
                "Your session has expired or the request is invalid. Please refresh the page "
                "and try again.",
                "nonce_failure_cache_sse",
            )
        raw = parse_form(request.body, request.headers.get("content-type", ""), "surrogateescape")
        message = raw.get("message", "")
        valid = not any("\udc80" <= char <= "\udcff" for char in message)
        message = message.replace("\0", "") if valid else ""
        images = None
        if form.get("image_inputs"):
            images = self._images(form["image_inputs"])
            if isinstance(images, Reply):
                return images
        if message in ("", "0") and not images:
            return self._json_error(
                400, "Data to cache (message or image) cannot be empty.", "empty_data_to_cache"
            )
        key = "aipkit_sse_" + "".join(
            secrets.choice(string.ascii_letters + string.digits) for _ in range(32)
        )
        client_id = sanitize_key(form.get("user_client_message_id", "")) or None
        with self.site.lock:
            self.cache[key.lower()] = Cached(message, client_id, images, self.site.now() + KEY_TTL)
        return json_reply({"success": True, "data": {"cache_key": key}})

    def _images(self, raw: str) -> list[dict] | Reply:
        """``image_inputs`` checked as the plugin does: a JSON list, at most 4, JPG/PNG/WEBP,
        base64, 20 MB each (captures 55–57)."""
        try:
            entries = json.loads(raw)
            pairs = [(entry["mime_type"], str(entry["base64_data"])) for entry in entries]
        except (ValueError, TypeError, LookupError):
            return self._json_error(400, "Invalid image upload payload.", "invalid_image_payload")
        if len(pairs) > MAX_IMAGES:
            return self._json_error(
                400, f"Too many images uploaded. Max images: {MAX_IMAGES}.", "too_many_images"
            )
        images = []
        for mime, data in pairs:
            image = self._image(mime, data)
            if isinstance(image, Reply):
                return image
            images.append(image)
        return images

    def _image(self, mime: str, data: str) -> dict | Reply:
        if mime not in IMAGE_TYPES:
            return self._json_error(
                400, "Invalid image type. Allowed: JPG, PNG, WEBP.", "invalid_image_type"
            )
        data = "".join(data.split(",", 1)[-1].split())
        try:
            size = len(base64.b64decode(data, validate=True))
        except (binascii.Error, ValueError):
            return self._json_error(400, "Invalid image data provided.", "invalid_image_payload")
        if size > 20 * 1024 * 1024:
            return self._json_error(413, "Image is too large. Max size: 20MB.", "image_too_large")
        return {"type": mime, "base64": data, "size": size}

    def history(self, request: Recorded, fault: Fault | None) -> Reply:
        fields = request.fields
        if not self.site.nonce_ok(fields.get("_ajax_nonce", "")):
            return self._json_error(403, "Security check failed (nonce).", "nonce_failure")
        bot_id = absint(fields.get("bot_id", ""))
        conversation = sanitize_key(fields.get("conversation_uuid", ""))
        session = sanitize_text_field(fields.get("session_id", ""))
        if not bot_id or not conversation:
            return self._json_error(400, "Bot ID and Conversation ID are required.")
        if not session:
            return self._json_error(400, "Session ID is required for guest history.")
        with self.site.lock:
            stored = list(self.conversations.get((bot_id, session, conversation), []))
        override = self.site.history_model_usage or {}
        history = [{**entry, **override} if entry["role"] == "bot" else entry for entry in stored]
        return json_reply({"success": True, "data": {"history": history}})

    # -- the stream step ---------------------------------------------------------------

    def stream_step(self, request: Recorded, fault: Fault | None) -> Reply:
        site, query = self.site, request.query
        frames = [PADDING] if self.features.since(2, 3, 93) else []

        def refuse(text: str, notice: bool = False) -> Reply:
            extra = {"quota_notice": {"type": "quota_notice", "message": text, "actions": []}}
            return self._sse([*frames, self._error(text, extra if notice else None), DONE])

        bot_id = absint(query.get("bot_id", ""))
        checks_origin = self.features.since(2, 3, 31) or fault == Fault.CORS_DENIED
        if checks_origin and self._cross_origin(request, query, fault):
            return refuse(NOT_PERMITTED)
        fields = request.fields
        nonce = fields.get("_ajax_nonce") or fields.get("_wpnonce", "")
        if fault == Fault.STREAM_NONCE or not site.nonce_ok(nonce):
            return refuse(self.features.stream_nonce_error)
        key = sanitize_key(query.get("cache_key", ""))
        if not key:
            return refuse("Message cache key is missing.")
        with site.lock:
            cached = self.cache.pop(key, None)
        if cached is None or fault == Fault.KEY_LOST:
            return refuse("Message not found in cache.")
        if fault == Fault.KEY_EXPIRED or cached.expires < site.now():
            return refuse("Cached message has expired.")
        bot = site.bots.get(bot_id)
        if bot is None:
            return refuse("Invalid chatbot specified.")
        conversation = sanitize_key(query.get("conversation_uuid", ""))
        if not conversation:
            return refuse("Conversation ID is missing.")
        session = sanitize_text_field(query.get("session_id", ""))
        if not session:
            return refuse("Session ID is missing for guest.")
        if not cached.message and not cached.images:
            return refuse("Message or image cannot be empty.")
        fault = fault if fault in REFUSALS else self._gate(bot_id, session, cached.message) or fault
        if fault in REFUSALS:
            text = REFUSALS[fault][0]
            return refuse(text, notice=text == QUOTA_TEXT and self.features.since(2, 4, 5))
        thread = (bot_id, session, conversation)
        history = self._history_messages(thread, bot)
        self._log(thread, "user", cached.message, cached.client_id)
        if fault == Fault.API_KEY_MISSING:
            return refuse(f"API key missing for {bot.provider}.")
        images = cached.images or []
        if bot.api == "xai" and any(i["type"] not in IMAGE_TYPES[:2] for i in images):
            return refuse(XAI_IMAGES)
        messages = self._payload_messages(history, cached.message)
        message_id = "aipkit-msg-" + uniqid(site.now())
        frames.append(frame("message_start", {"message_id": message_id}))
        start = len(frames)
        search = providers.searches(bot, query) if bot.api else False
        asked = providers.search_asked(query)
        outcome = self._call_model(bot, messages, fault, images, search, asked)
        frames += outcome.frames
        self._finish(thread, bot, messages, outcome, message_id, stream=True)
        return self._sse(frames, self._cut_point(frames, start))

    def _call_model(
        self,
        bot: Bot,
        messages: list[dict],
        fault: Fault | None,
        images: list[dict] | None = None,
        search: bool = False,
        asked: bool = False,
    ) -> Outcome:
        """Run the stand-in model; ``Outcome.frames`` is the SSE it causes after message_start."""
        if bot.api:
            return self._call_api(bot, messages, fault, images or [], (search, asked))
        site, outcome = self.site, Outcome()
        site.record_upstream(messages)
        outcome.response_id = site.next_response_id()
        if fault in (Fault.UPSTREAM_401, Fault.UPSTREAM_429, Fault.CONNECTION_ERROR):
            error = {
                Fault.UPSTREAM_401: f"API Error: {model.UPSTREAM_401} (Code: invalid_api_key)",
                Fault.UPSTREAM_429: f"API Error: {model.rate_limited(bot.model)} "
                "(Code: rate_limit_exceeded)",
                Fault.CONNECTION_ERROR: TIMED_OUT,
            }[fault]
            return self._failed(outcome, error)
        frames = outcome.frames
        if self.features.since(2, 3, 69) and bot.provider in ("OpenAI", "OpenRouter"):
            for kind in ("response.created", "response.in_progress"):
                frames.append(frame("status", {"type": kind, "status": "in_progress",
                                               "response_id": outcome.response_id}))  # fmt: skip
        big = fault == Fault.BIG
        text = model.answer_text(site, messages, big=big) or model.default_answer(messages)
        pieces = model.deltas(text, big=big)
        if fault in (Fault.EMPTY, Fault.STATUS_ONLY):
            text, pieces = "", []
        if fault in MODEL_FAILURES:
            pieces = pieces[:2]
        pieces = [""] + pieces if bot.provider == "DeepSeek" else pieces
        if fault == Fault.UNKNOWN_EVENT:
            frames.append(frame("aipkit_unknown_event", {"note": "an event from the future"}))
        for piece in pieces:
            frames.append(frame(None, {"delta": piece}))
            if fault == Fault.OPENROUTER:
                frames.append(b": OPENROUTER PROCESSING\n\n")
        if fault == Fault.INVALID_UTF8:
            first = next((i for i, f in enumerate(frames) if f.startswith(b"data: ")), -1)
            frames.insert(first + 1, b'data: {"delta":"\xff\xfeBAD"}\n\n')
        if fault in MODEL_FAILURES:
            return self._failed(outcome, MODEL_FAILURES[fault])
        outcome.stored = text
        if fault == Fault.NO_DONE:
            return outcome
        if bot.provider == "OpenAI" and fault != Fault.STATUS_ONLY:
            frames.append(frame("openai_response_id", {"id": outcome.response_id}))
        if fault == Fault.INCOMPLETE:
            frames.append(self._error(INCOMPLETE, event="warning"))
            outcome.stored += INCOMPLETE
        if fault == Fault.CITATIONS:
            frames.append(frame("citations", CITATIONS))
        frames.append(DONE)
        return outcome

    def _call_api(
        self,
        bot: Bot,
        messages: list[dict],
        fault: Fault | None,
        images: list[dict],
        searching: tuple[bool, bool],
    ) -> Outcome:
        """The stand-in model behind one of the six APIs (``providers.py``); ``searching``:
        (the search tool is sent, the browser's toggle was on)."""
        search, asked = searching
        site, outcome, api = self.site, Outcome(), bot.api or "openai"
        site.record_upstream(messages)
        outcome.response_id = site.next_response_id()
        seen = providers.seen_images(bot, messages, images)
        outcome.payload = providers.request_body(bot, messages, images, search)
        call = providers.Call(api, *providers.HOSTS[api], outcome.payload, seen, search)
        call.search_asked = asked
        number = site.record_call(call)
        triggered, reply = (
            providers.triggered(messages[-1]["content"]) if site.triggers else (None, None)
        )
        fault = fault or triggered
        refused = providers.refusal(api, fault, bot.model) if fault else None
        if refused is not None:
            call.status = refused[0]
            return self._failed(outcome, refused[1])
        if fault == Fault.CONNECTION_ERROR:
            return self._failed(outcome, TIMED_OUT)
        text, pieces = self._api_answer(messages, seen, reply, fault)
        turn = providers.Turn(bot, number, text, pieces, search, fault, self._error,
                              message=messages[-1]["content"])  # fmt: skip
        providers.stream(turn)
        outcome.frames = providers.decorated(turn.frames, fault)
        outcome.failed = turn.failed
        outcome.stored = f"Error: {turn.failure}" if turn.failed else turn.stored
        return outcome

    def _api_answer(
        self, messages: list[dict], seen: list[dict], reply: str | None, fault: Fault | None
    ) -> tuple[str, list[str]]:
        """The answer and its deltas: the knobs', a trigger word's, or the model's own (which
        names the images it saw)."""
        big = fault == Fault.BIG
        text = model.answer_text(self.site, messages, big=big)
        text = reply if text is None else text
        if text is None:
            text = model.default_answer(messages) + providers.image_note(seen)
        if fault in (Fault.EMPTY, Fault.STATUS_ONLY):
            return "", []
        return text, model.deltas(text, big=big)

    def _failed(self, outcome: Outcome, error: str) -> Outcome:
        outcome.frames.append(self._error(error))
        outcome.stored, outcome.failed = f"Error: {error}", True
        return outcome

    def _finish(
        self,
        thread: Thread,
        bot: Bot,
        messages: list[dict],
        outcome: Outcome,
        message_id: str,
        stream: bool,
    ) -> None:
        """Log the reply (or ``Error: …``) and count it against the guest quota."""
        payload = {"model": bot.model, "input": messages, **({"stream": True} if stream else {}),
                   "store": False, "temperature": 1,
                   "max_output_tokens": 4000 if self.features.since(2, 4) else 1500,
                   "top_p": 1}  # fmt: skip
        payload = outcome.payload or payload
        words_in = sum(math.ceil(len(m["content"]) / 4) for m in messages)
        words_out = math.ceil(len(outcome.stored) / 4)
        extra = {
            "provider": bot.provider,
            "model": bot.model,
            "usage": {"input_tokens": words_in, "output_tokens": words_out,
                      "total_tokens": words_in + words_out},
            "openai_response_id": outcome.response_id,
            "request_payload": {"provider": bot.provider, "model": bot.model,
                                "payload_sent": payload},
        }  # fmt: skip
        self._log(thread, "bot", outcome.stored, message_id.replace(".", ""), extra)
        if not outcome.failed:
            with self.site.lock:
                self.usage[thread[:2]] = self.usage.get(thread[:2], 0) + 1

    # -- 2.3's non-stream message ----------------------------------------------------

    def message(self, request: Recorded, fault: Fault | None) -> Reply:
        form, site = request.form, self.site
        nonce = form.get("_ajax_nonce", "")
        if self.features.since(2, 3, 20) and not site.nonce_ok(nonce):
            return self._json_error(
                403, "Security check failed. Please refresh the page and try again."
            )
        bot_id = absint(form.get("bot_id", ""))
        conversation = sanitize_key(form.get("conversation_uuid", ""))
        session = sanitize_text_field(form.get("session_id", ""))
        text = form.get("message", "")
        text = strip_all_tags(text) if not self.features.since(2, 3, 26) else text.strip()
        for missing, error in (
            (not bot_id, "Bot ID is required."),
            (not conversation, "Conversation ID is required."),
            (not session, "Session ID is missing for guest."),
            (not text, "Message or image cannot be empty."),
            (bot_id not in site.bots, "Invalid chatbot specified."),
        ):
            if missing:
                return self._json_error(400, error)
        bot = site.bots[bot_id]
        fault = fault if fault in REFUSALS else self._gate(bot_id, session, text) or fault
        if fault in REFUSALS:
            return self._json_error(REFUSALS[fault][1], REFUSALS[fault][0])
        thread = (bot_id, session, conversation)
        self._log(thread, "user", text, None)
        if fault == Fault.API_KEY_MISSING:
            return self._json_error(400, f"API key is missing for {bot.provider}.")
        messages = self._payload_messages(self._history_messages(thread, bot), text)
        message_id = "aipkit-msg-" + uniqid(site.now()).replace(".", "")
        outcome = self._call_model(bot, messages, fault)
        if outcome.failed:  # the plugin dies on an upstream error (as captured)
            return ajax_reply(500, CRITICAL_ERROR.encode(), HTML)
        self._finish(thread, bot, messages, outcome, message_id, stream=False)
        data = {"reply": outcome.stored, "message_id": message_id}
        if bot.provider == "OpenAI":
            data["openai_response_id"] = outcome.response_id or ""
        return json_reply({"success": True, "data": data})

    # -- memory, gates, helpers ------------------------------------------------------

    def _log(
        self, thread: Thread, role: str, content: str, message_id: str | None, extra=None
    ) -> None:
        entry = {"message_id": message_id or f"aipkit-msg-{uniqid(self.site.now())}",
                 "role": role, "content": kses_post(content),
                 "timestamp": int(self.site.now()), **(extra or {})}  # fmt: skip
        with self.site.lock:
            self.conversations.setdefault(thread, []).append(entry)

    def _history_messages(self, thread: Thread, bot: Bot) -> list[dict]:
        with self.site.lock:
            stored = list(self.conversations.get(thread, []))
        return [
            {"role": "assistant" if entry["role"] == "bot" else "user", "content": content}
            for entry in stored[-bot.max_messages :]
            if (content := entry["content"].strip())
        ]

    def _payload_messages(self, history: list[dict], message: str) -> list[dict]:
        today = datetime.fromtimestamp(self.site.now(), UTC)
        date = f"{today:%B} {today.day}, {today.year}"
        current = [{"role": "user", "content": message.strip()}] if message.strip() else []
        return [{"role": "system", "content": SYSTEM.format(date=date)}, *history, *current]

    def _gate(self, bot_id: int, session: str, message: str) -> Fault | None:
        """The fault the site's quota and moderation settings make of this message."""
        quota = self.site.guest_quota
        if quota == 0:
            return Fault.GUEST_DISABLED
        if quota is not None and self.usage.get((bot_id, session), 0) >= quota:
            return Fault.QUOTA
        return self.site.moderation_fault(message)

    def _cross_origin(self, request: Recorded, fields: dict, fault: Fault | None) -> bool:
        if fault == Fault.CORS_DENIED:
            return True
        origin = request.headers.get("origin")
        if not origin or absint(fields.get("bot_id", "")) <= 0:
            return False
        ours, theirs = urlsplit(self.site.base_url), urlsplit(origin)
        return (ours.scheme, ours.netloc) != (theirs.scheme, theirs.netloc)

    def _error(self, text: str, extra: dict | None = None, event: str = "error") -> bytes:
        return frame(event, {"error": text, **(extra or {})}, f"err-{int(self.site.now())}")

    def _json_error(self, status: int, message: str, code: str | None = None) -> Reply:
        data = {"message": message, **({"code": code} if code else {})}
        return json_reply({"success": False, "data": data}, status)

    def _sse(self, frames: list[bytes], cut_at: int | None = None) -> Reply:
        transform = ", no-transform" if self.features.since(2, 3, 93) else ""
        headers = [
            *ajax_headers("no-cache, no-store, must-revalidate, max-age=0" + transform),
            ("Pragma", "no-cache"),
            ("X-Accel-Buffering", "no"),
            ("Connection", "keep-alive"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Type", "text/event-stream; charset=utf-8"),
        ]
        return Reply(200, headers, frames, chunked=True, cut_at=cut_at)

    @staticmethod
    def _cut_point(frames: list[bytes], start: int) -> int:
        """Just after the second text frame (or the last frame before the end)."""
        texts = [i for i, f in enumerate(frames) if i >= start and f.startswith(b"data: {")]
        if texts:
            return texts[min(1, len(texts) - 1)] + 1
        return max(start, len(frames) - 1)
