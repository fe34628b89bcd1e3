"""The 1.x chat protocol (releases 1.8.79 – 1.8.96, and 2.2 which still runs 1.9.18 code):
one POST ``wpaicg_chat_shortcode_message`` / ``wpaicg_chatbox_message`` answered as SSE
(OpenAI chunks passed through, ``data: [DONE]``) or JSON, per ``shared/protocol.md`` and
the captures of ``tests/samples/1.8.*``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from . import model
from .faults import Fault
from .http import Recorded, Reply
from .wp import (
    HTML,
    ajax_headers,
    ajax_reply,
    json_reply,
    magic_quotes,
    php_json,
    sanitize_text_field,
)

if TYPE_CHECKING:
    from . import AIPowerSite

ACTIONS = ("wpaicg_chat_shortcode_message", "wpaicg_chatbox_message")
CONCERNS = frozenset({"chat", "any"})
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
BANNED = {
    Fault.IP_BANNED: ("You are not allowed to access this feature.", "ipBanned"),
    Fault.WORD_BANNED: (
        "Your message contains prohibited words. Please modify your message and try again.",
        "messageFlagged",
    ),
}
SSE_HEADERS = [
    *ajax_headers("no-cache"),
    ("X-Accel-Buffering", "no"),
    ("Transfer-Encoding", "chunked"),
    ("Content-Type", "text/event-stream;charset=UTF-8"),
]


def release_tuple(release: str) -> tuple[int, ...]:
    return tuple(int(part) for part in release.split("."))


def legacy_prompt(messages: list[dict]) -> str:
    """The prompt the plugin builds for a legacy completion model (as captured: the
    greeting twice, then the question)."""
    return f"{messages[0]['content']}{messages[0]['content']}\n{messages[-1]['content']}\n"


def sse_reply(frames: list[bytes]) -> Reply:
    return Reply(200, list(SSE_HEADERS), frames, chunked=True, cut_at=min(3, len(frames)))


class V1:
    """Answers the 1.x admin-ajax actions for an ``AIPowerSite``."""

    actions = ACTIONS

    def __init__(self, site: AIPowerSite) -> None:
        self.site = site
        self.release = release_tuple(site.release)

    def concerns(self, action: str) -> frozenset[str]:
        return CONCERNS

    def answer(self, request: Recorded, action: str, fault: Fault | None) -> Reply:
        site = self.site
        fields = request.fields
        if not site.nonce_ok(fields.get("_wpnonce", "")):
            return self._reject_nonce(request)
        if fault == Fault.NO_AI:
            return json_reply({"status": "error", "msg": "Unable to initialize the AI "
                               "instance. Please make sure the API key is valid."})  # fmt: skip
        posted = fields if self.release <= (1, 8, 85) else request.form
        message = self._sanitized(posted.get("message", ""))
        if fault not in BANNED:
            fault = site.moderation_fault(message) or fault
        streams = site.bot_stream if fields.get("bot_id", "0") == CUSTOM_BOT else site.stream
        if fault in BANNED and not streams:
            return json_reply({"status": "error", "msg": BANNED[fault][0]})
        if fault in (Fault.TOKEN_LIMIT, Fault.QUOTA):
            event = {"msg": "You have reached your token limit.", "tokenLimitReached": True}
            if not streams:
                return json_reply(event)
            return sse_reply([b"data: " + json.dumps(event, separators=(",", ":")).encode()
                              + b"\n\n"])  # fmt: skip
        history = self._history(fields.get("wpaicg_chat_history", ""))
        if not message:
            return json_reply({"status": "error", "msg": "It appears that nothing was inputted."})
        messages = [
            {"role": "user", "content": self._greeting(fields.get("post_id", ""))},
            *history,
            {"role": "user", "content": message},
        ]
        site.record_upstream([{"prompt": legacy_prompt(messages)}] if site.legacy_model
                             else messages)  # fmt: skip
        answer = self._answer_text(messages, fault)
        if not streams:
            return self._json_answer(messages, answer, fault)
        widget = action == "wpaicg_chatbox_message"
        chat_model = WIDGET_MODEL if widget else site.model  # the widget's own settings
        return sse_reply(self._frames(messages, answer, fault, chat_model))

    def _reject_nonce(self, request: Recorded) -> Reply:
        if self.release <= (1, 8, 85):
            return json_reply({"status": "error", "msg": "Nonce verification failed"})
        body = "The link you followed has expired."
        referer = request.headers.get("referer")
        if referer:
            body += f'</p><p><a href="{referer}">Please try again.</a>'
        return ajax_reply(403, body.encode(), HTML)

    def _sanitized(self, message: str) -> str:
        if self.release <= (1, 8, 90):
            return sanitize_text_field(magic_quotes(message))
        if self.release <= (1, 8, 95):
            return sanitize_text_field(message)
        return message

    def _history(self, raw: str) -> list[dict]:
        """``wpaicg_chat_history`` as the 1.8 handler reads it (protocol §5.2)."""
        textarea = self.release >= (1, 8, 91)
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

    def _answer_text(self, messages: list[dict], fault: Fault | None) -> str:
        chosen = model.answer_text(self.site, messages, big=fault == Fault.BIG)
        if chosen is not None:
            return chosen
        if self.site.legacy_model:
            ending = legacy_prompt(messages).rstrip()[-60:]
            return f" Hello from the fake upstream. Prompt ended with: {ending}"
        return model.default_answer(messages)

    def _json_answer(self, messages: list[dict], answer: str, fault: Fault | None) -> Reply:
        greeting = messages[0]["content"]
        if fault in (Fault.UPSTREAM_401, Fault.UPSTREAM_429):
            return json_reply({"status": "error", "msg": model.UPSTREAM_401,
                               "greeting_message": greeting, "log": False})  # fmt: skip
        data = "" if fault == Fault.EMPTY else answer
        return json_reply({"status": "success", "msg": "Something went wrong",
                           "greeting_message": greeting, "data": data,
                           "log": False})  # fmt: skip

    def _frames(
        self, messages: list[dict], answer: str, fault: Fault | None, chat_model: str
    ) -> list[bytes]:
        """The SSE body, frame by frame."""
        chunk_id = self.site.next_id()
        legacy = self.site.legacy_model

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
                       "created": 1727000000, "model": chat_model,
                       "system_fingerprint": "fp_fake",
                       "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                    "finish_reason": finish}]}  # fmt: skip
            text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
            return f"data: {text}\n\n".encode()

        def error_words(text: str) -> list[bytes]:
            frames = [
                f'event: message\ndata: {{"choices":[{{"delta":{{"content":"{w}"}}}}]}}\n\n'
                .encode()
                for w in model.deltas(text)
            ]  # fmt: skip
            return frames + [b'data: {"choices":[{"finish_reason":"stop"}]}\n\n']

        tokens = model.deltas(answer, big=fault == Fault.BIG)
        frames = [] if legacy else [chunk(None, role=True)]
        if fault in BANNED:
            event = {"msg": BANNED[fault][0], BANNED[fault][1]: True}
            frames.insert(0, b"data: " + json.dumps(event).encode() + b"\n\n")
        if fault in (Fault.UPSTREAM_401, Fault.UPSTREAM_429):
            return error_words(model.UPSTREAM_401) * 2 + self._trailing(messages, "")
        if fault == Fault.LIMITED:
            return error_words("Something went wrong.")[:-1] + [b"data: [LIMITED]\n\n"]
        if fault in (Fault.UPSTREAM_CUT, Fault.STREAM_ERROR):
            frames += [chunk(t) for t in tokens[:2]]
            if fault == Fault.STREAM_ERROR:
                frames.append(
                    b'data: {"error":{"message":"' + model.SERVER_ERROR.encode() + b'",'
                    b'"type":"server_error","param":null,"code":null}}\n\n'
                )
            return frames + self._trailing(messages, "".join(tokens[:2]))
        if fault == Fault.EMPTY:
            tokens = []
        for token in tokens:
            frames.append(chunk(token))
            if fault == Fault.OPENROUTER:
                frames.append(b": OPENROUTER PROCESSING\n\n")
        if fault == Fault.INVALID_UTF8:
            frames.insert(2, chunk("\x00BAD\x00").replace(b"\\u0000BAD\\u0000", b"\xff\xfe"))
        finish = "length" if fault == Fault.INCOMPLETE else "stop"
        frames.append(chunk(None, finish=finish) if not legacy else chunk("", finish))
        frames.append(b"data: [DONE]\n\n")
        return frames + self._trailing(messages, answer)

    def _trailing(self, messages: list[dict], data: str) -> list[bytes]:
        """The JSON object releases up to 1.8.79 glue after the stream."""
        if self.release > (1, 8, 79):
            return []
        return [php_json({"status": "success", "msg": "Something went wrong",
                          "greeting_message": messages[0]["content"], "data": data,
                          "log": False})]  # fmt: skip
