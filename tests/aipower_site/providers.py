"""chatgptfree.ai's nine bots on the six model APIs behind AI Power 2.4.71, as the captures
of ``tests/samples/2.4.71-providers`` show them (read its README).

A bot's ``api`` (from its page ``provider``) picks what the plugin sends to the model
(``request_body``: each API's own format, images and the web search tool included) and what
the browser gets back (``stream``: the status events, the empty deltas, the endings, the
citations of a search, each API's error wording). ``Call`` records every model call: the
body as the API received it, the images it saw and whether search was asked for.

From a test::

    with AIPowerSite("2.4.71", providers=True) as site:   # pages /, /chat/ as captured
        site.faults = [Fault.UPSTREAM_429.at("claude")]   # once, on the Claude bot only
        ...                                               # llm -m chatgptfree/claude -a x.png
        call = site.calls[-1]                             # what the API received:
        call.api, call.body, call.status                  # "anthropic", its JSON, 429
        call.images                                       # [{"mime_type", "base64_data", "size"}]
        call.web_search, call.search_asked                # tool sent / toggle on in the GET

Bots (``site.bots``): 25865 GPT-4o Mini, 25871 GPT-5 Nano (openai), 25874 Gemini (google),
25873 DeepSeek (deepseek), 25875 Claude (anthropic), 25872 Grok (xai), 25870 Llama, 25869
Qwen, 29624 Perplexity (openrouter). Faults in each API's words: ``upstream_401`` (alias
``bad_key``), ``upstream_429`` (``rate_limited``), ``stream_error``, ``incomplete``
(``max_tokens``); the message's trigger words (``FAKE_429`` …, ``TRIGGERS``) do the same.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import model
from .faults import Fault
from .wp import php_json_unicode

if TYPE_CHECKING:
    from .v2 import Bot

FOLDER = "2.4.71-providers"
CAPTURED_NONCE = "6b21e62215"
API_OF = {"OpenAI": "openai", "Google": "google", "DeepSeek": "deepseek", "Claude": "anthropic",
          "xAI": "xai", "OpenRouter": "openrouter"}  # fmt: skip
HOSTS = {
    "openai": ("api.openai.com", "/v1/responses"),
    "google": ("generativelanguage.googleapis.com", "/v1beta/interactions"),
    "deepseek": ("api.deepseek.com", "/v1/chat/completions"),
    "anthropic": ("api.anthropic.com", "/v1/messages"),
    "xai": ("api.x.ai", "/v1/responses"),
    "openrouter": ("openrouter.ai", "/api/v1/responses"),
}
SNAPSHOTS = {"claude-3-5-haiku-latest": "claude-3-5-haiku-20241022"}
ANTHROPIC_429 = (
    "This request would exceed the rate limit for your organization "
    "(00000000-0000-4000-8000-00000fake000) of 50,000 input tokens per minute. For details, "
    "refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers "
    "for current usage. Please reduce the prompt length or the maximum tokens requested, or "
    "try again later. You may also contact sales at https://www.anthropic.com/contact-sales "
    "to discuss your options for a rate limit increase. Type: rate_limit_error"
)
XAI_CAPACITY = "The service is temporarily at capacity. Please retry your request shortly."
BAD_KEY = {  # api -> (HTTP status of the API, the text after "API Error: ")
    "openai": (401, f"{model.UPSTREAM_401} (Code: invalid_api_key)"),
    "google": (400, "API key not valid. Please pass a valid API key."),
    "deepseek": (401, "Authentication Fails, Your api key: ****-key is invalid "
                      "(Code: invalid_request_error) Type: authentication_error"),
    "anthropic": (401, "invalid x-api-key Type: authentication_error"),
    "xai": (400, "Incorrect API key provided: xa***ey. You can obtain an API key from "
                 "https://console.x.ai."),
    "openrouter": (401, "User not found. (Code: 401)"),
}  # fmt: skip
RATE_LIMITED: dict[str, Callable[[str], str]] = {
    "openai": lambda name: f"{model.rate_limited(name)} (Code: rate_limit_exceeded)",
    "google": lambda name: (
        "You exceeded your current quota, please check your plan and billing details. For "
        "more information on this error, head to: https://ai.google.dev/gemini-api/docs/"
        "rate-limits."
    ),
    "deepseek": lambda name: "Rate Limit Reached (Code: rate_limit_reached) Type: rate_limit_error",
    "anthropic": lambda name: ANTHROPIC_429,
    "xai": lambda name: XAI_CAPACITY,
    "openrouter": lambda name: "Provider returned error (Code: 429)",
}
STREAM_ERROR = {  # the API's error event after two deltas (Google's is swallowed)
    "openai": f"{model.SERVER_ERROR} (Code: server_error)",
    "deepseek": "Our server encounters an issue. Please retry your request after a brief wait. "
    "(Code: server_error) Type: server_error",
    "anthropic": "Overloaded Type: overloaded_error",
    "xai": XAI_CAPACITY,
    "openrouter": "Provider disconnected unexpectedly",
}
INCOMPLETE = " (Incomplete: max_output_tokens)"
INCOMPLETE_APIS = ("openai", "xai", "openrouter")
CLAUDE_MAX_TOKENS = "Claude stopped because the maximum output token limit was reached."
SEARCH_TOOLS = {
    "openai": [{"type": "web_search_preview", "search_context_size": "medium"}],
    "google": [{"type": "google_search"}],
    "anthropic": [{"name": "web_search", "type": "web_search_20250305", "max_uses": 5}],
    "xai": [{"type": "web_search"}],
    "openrouter": [{"type": "openrouter:web_search",
                    "parameters": {"max_results": 5, "max_uses": 1, "max_total_results": 10}}],
}  # fmt: skip
SOURCES = [("https://example.com/source-1", "Example Source 1"),
           ("https://example.com/source-2", "Example Source 2")]  # fmt: skip
GROUNDING_STYLE = ".container{display:flex}.chip{padding:4px 8px;border-radius:16px}"
ALPHANUMERIC = string.ascii_letters + string.digits
UNICODE = ' Ünïcödé → 日本語テキスト, emoji 🙂👍🏽 and a quote " and a backslash \\ done.'
TRIGGERS = {  # the captures' stand-in: a word in the message makes it answer as the API does
    "FAKE_401": Fault.UPSTREAM_401,
    "FAKE_429": Fault.UPSTREAM_429,
    "FAKE_STREAM_ERROR": Fault.STREAM_ERROR,
    "FAKE_LONG": Fault.INCOMPLETE,
}


@dataclass
class Call:
    """One model call as the API received it."""

    api: str
    host: str
    path: str
    body: dict
    images: list[dict]  # what reached the model: {"mime_type", "base64_data", "size"}
    web_search: bool  # the search tool was sent
    status: int = 200  # the API's HTTP status
    search_asked: bool = False  # the stream GET carried a search toggle (sent or not)


@dataclass
class Turn:
    """What one model call streams: the answer in pieces and how it ends."""

    bot: Bot
    number: int  # the site's model call count
    text: str
    pieces: list[str]
    search: bool
    fault: Fault | None
    error: Callable[..., bytes]  # the site's error/warning frame
    message: str = ""  # the last user message (Google's search chip)
    frames: list[bytes] = field(default_factory=list)
    failed: bool = False
    failure: str = ""  # the error text the browser got

    @property
    def stored(self) -> str:
        """What the site keeps as the bot's reply (a swallowed error keeps the two deltas)."""
        if self.broken:
            return "".join(self.pieces[:2])
        ending = INCOMPLETE if self.incomplete and self.bot.api in INCOMPLETE_APIS else ""
        return self.text + ending

    @property
    def incomplete(self) -> bool:
        return self.fault == Fault.INCOMPLETE

    @property
    def broken(self) -> bool:
        return self.fault in (Fault.STREAM_ERROR, Fault.RESPONSE_FAILED, Fault.UPSTREAM_CUT)


def frame(event: str | None, data: object, event_id: str | None = None) -> bytes:
    head = (f"event: {event}\n" if event else "") + (f"id: {event_id}\n" if event_id else "")
    return f"{head}data: {php_json_unicode(data)}\n\n".encode()


def status(**data: object) -> bytes:
    return frame("status", data)


def done(**extra: object) -> bytes:
    return frame("done", {"finished": True, **extra})


def random_text(size: int) -> str:
    return "".join(secrets.choice(ALPHANUMERIC) for _ in range(size))


def triggered(message: str) -> tuple[Fault | None, str | None]:
    """The fault and answer a trigger word asks for: ``FAKE_401``, ``FAKE_429``,
    ``FAKE_STREAM_ERROR``, ``FAKE_LONG`` (300 words, then the token limit), ``FAKE_UNICODE``."""
    fault = next((f for word, f in TRIGGERS.items() if word in message), None)
    if fault == Fault.INCOMPLETE:
        return fault, " ".join(f"word{i}" for i in range(300))
    if "FAKE_UNICODE" in message:
        return fault, model.ANSWER + message + UNICODE
    return fault, None


# -- what the plugin sends to the model -------------------------------------------------


def sends_images(api: str) -> bool:
    """DeepSeek's request drops images silently (capture 51); the others forward them."""
    return api != "deepseek"


def search_asked(query: dict[str, str]) -> bool:
    """The chat box's globe toggle was on (``frontend_*_active=true``), whatever the bot."""
    names = ("frontend_web_search_active", "frontend_google_search_grounding_active")
    return any(query.get(name) == "true" for name in names)


def searches(bot: Bot, query: dict[str, str]) -> bool:
    """The plugin adds the search tool when the bot allows it and the toggle is on."""
    if bot.api == "google":
        toggle = query.get("frontend_google_search_grounding_active") == "true"
        return bot.google_grounding and toggle
    toggle = query.get("frontend_web_search_active") == "true"
    return bot.web_search and bot.api in SEARCH_TOOLS and toggle


def attached(bot: Bot, messages: list[dict], images: list[dict]) -> list[dict]:
    """The images that go to the model: on a last user message only (as the plugin does),
    and never to DeepSeek."""
    last_is_user = len(messages) > 1 and messages[-1]["role"] == "user"
    return images if sends_images(bot.api or "openai") and last_is_user else []


def request_body(bot: Bot, messages: list[dict], images: list[dict], search: bool) -> dict:
    """The body the bot's API receives (``upstream.json`` of the captures)."""
    api = bot.api or "openai"
    tools = {"tools": SEARCH_TOOLS[api]} if search else {}
    return BODIES[api](bot, messages, attached(bot, messages, images), tools)


def on_last(
    turns: list[dict], images: list[dict], build: Callable[[dict, list[dict]], dict]
) -> list[dict]:
    """Each turn in the API's shape, the images on the last one."""
    return [build(turn, images if i == len(turns) - 1 else []) for i, turn in enumerate(turns)]


def google_body(bot: Bot, messages: list[dict], images: list[dict], tools: dict) -> dict:
    steps = on_last(messages[1:], images, google_step)
    return {"model": bot.model, "input": steps, "store": False, "stream": True,
            "system_instruction": messages[0]["content"],
            "generation_config": {"temperature": 1, "max_output_tokens": 4000, "top_p": 1},
            **tools}  # fmt: skip


def anthropic_body(bot: Bot, messages: list[dict], images: list[dict], tools: dict) -> dict:
    chat = on_last(messages[1:], images, anthropic_message)
    return {"model": bot.model, "messages": chat, "max_tokens": 4000,
            "system": messages[0]["content"], "temperature": 1, **tools,
            "stream": True}  # fmt: skip


def deepseek_body(bot: Bot, messages: list[dict], images: list[dict], tools: dict) -> dict:
    return {"messages": messages, "model": bot.model, "temperature": 1, "max_tokens": 4000,
            "top_p": 1, "stream": True, "thinking": {"type": "disabled"}}  # fmt: skip


def responses_input(messages: list[dict], images: list[dict]) -> list[dict]:
    """OpenAI, xAI and OpenRouter: the messages, images as parts of the last one."""
    return on_last(messages, images, responses_message)


def xai_body(bot: Bot, messages: list[dict], images: list[dict], tools: dict) -> dict:
    return {"model": bot.model, "input": responses_input(messages, images), "store": False,
            "stream": True, **tools, "temperature": 1, "top_p": 1,
            "max_output_tokens": 4000}  # fmt: skip


def openrouter_body(bot: Bot, messages: list[dict], images: list[dict], tools: dict) -> dict:
    """(Images go as OpenAI's ``input_image`` parts: no capture shows OpenRouter's.)"""
    return {"model": bot.model, "input": responses_input(messages, images), "temperature": 1,
            "max_output_tokens": 4000, "top_p": 1, **tools, "stream": True}  # fmt: skip


def openai_body(bot: Bot, messages: list[dict], images: list[dict], tools: dict) -> dict:
    include = {"include": ["web_search_call.action.sources"]} if tools else {}
    reasoning = bot.model.startswith("gpt-5")  # no sampling parameters
    return {"model": bot.model, "input": responses_input(messages, images), "stream": True,
            "store": False, **include, **tools, **({} if reasoning else {"temperature": 1}),
            "max_output_tokens": 4000, **({} if reasoning else {"top_p": 1})}  # fmt: skip


BODIES: dict[str, Callable[[Bot, list[dict], list[dict], dict], dict]] = {
    "openai": openai_body, "google": google_body, "deepseek": deepseek_body,
    "anthropic": anthropic_body, "xai": xai_body, "openrouter": openrouter_body,
}  # fmt: skip


def responses_message(message: dict, images: list[dict]) -> dict:
    if not images:
        return message
    parts = [{"type": "input_text", "text": message["content"]}]
    parts += [{"type": "input_image", "image_url": f"data:{i['type']};base64,{i['base64']}"}
              for i in images]  # fmt: skip
    return {"role": message["role"], "content": parts}


def google_step(message: dict, images: list[dict]) -> dict:
    kind = "user_input" if message["role"] == "user" else "model_output"
    parts = [{"type": "text", "text": message["content"]}]
    parts += [{"type": "image", "mime_type": i["type"], "data": i["base64"]} for i in images]
    return {"type": kind, "content": parts}


def anthropic_message(message: dict, images: list[dict]) -> dict:
    if not images:
        return message
    parts: list[dict] = [{"type": "text", "text": message["content"]}]
    parts += [{"type": "image", "source": {"type": "base64", "media_type": i["type"],
               "data": i["base64"]}} for i in images]  # fmt: skip
    return {"role": message["role"], "content": parts}


def seen_images(bot: Bot, messages: list[dict], images: list[dict]) -> list[dict]:
    """What ``Call.images`` says the model saw."""
    return [
        {"mime_type": i["type"], "base64_data": i["base64"], "size": i["size"]}
        for i in attached(bot, messages, images)
    ]


def image_note(images: list[dict]) -> str:
    """The stand-in model's words about the images it saw (`` [image: image/png, 73 bytes]``)."""
    return "".join(f" [image: {i['mime_type']}, {i['size']} bytes]" for i in images)


# -- what the browser gets back ------------------------------------------------------------


def refusal(api: str, fault: Fault, model_name: str) -> tuple[int, str] | None:
    """(HTTP status of the API, the plugin's error text) of an API that refuses the call."""
    if fault == Fault.UPSTREAM_401:
        code, text = BAD_KEY[api]
        return code, f"API Error: {text}"
    if fault == Fault.UPSTREAM_429:
        return 429, f"API Error: {RATE_LIMITED[api](model_name)}"
    return None


def decorated(frames: list[bytes], fault: Fault | None) -> list[bytes]:
    """The frames with what a stream fault adds or takes away."""
    texts = [i for i, f in enumerate(frames) if f.startswith(b'data: {"delta"')]
    if fault == Fault.NO_DONE and frames and frames[-1].startswith(b"event: done"):
        return frames[:-1]
    if fault == Fault.UNKNOWN_EVENT:
        at = texts[0] if texts else len(frames) - 1
        return [*frames[:at], frame("aipkit_unknown_event", {"note": "an event from the future"}),
                *frames[at:]]  # fmt: skip
    if fault == Fault.INVALID_UTF8 and texts:
        return [*frames[: texts[0] + 1], b'data: {"delta":"\xff\xfeBAD"}\n\n',
                *frames[texts[0] + 1 :]]  # fmt: skip
    if fault == Fault.OPENROUTER:
        comment, out = b": OPENROUTER PROCESSING\n\n", []
        for index, piece in enumerate(frames):
            out += [piece, comment] if index in texts else [piece]
        return out
    if fault == Fault.CITATIONS:
        from .v2 import CITATIONS

        return [*frames[:-1], frame("citations", CITATIONS), *frames[-1:]]
    return frames


def stream(turn: Turn) -> None:
    """Fill ``turn.frames`` with what the bot's API makes the plugin send after message_start."""
    {"openai": openai, "google": google, "deepseek": deepseek, "anthropic": anthropic,
     "xai": xai, "openrouter": openrouter}[turn.bot.api or "openai"](turn)  # fmt: skip


def deltas(turn: Turn, pieces: list[str] | None = None) -> None:
    pieces = turn.pieces if pieces is None else pieces
    turn.frames += [frame(None, {"delta": piece}) for piece in pieces]


def text_or_failure(turn: Turn, wording: str) -> bool:
    """The deltas; on a broken stream only two, then the error. True if the turn failed."""
    if turn.broken:
        deltas(turn, turn.pieces[:2])
        text = wording if turn.fault == Fault.STREAM_ERROR else failure_text(turn.fault)
        turn.frames.append(turn.error(text))
        turn.failed, turn.failure = True, text
        return True
    deltas(turn)
    return False


def failure_text(fault: Fault | None) -> str:
    from .v2 import MODEL_FAILURES

    return MODEL_FAILURES.get(fault, model.SERVER_ERROR)


def segments(text: str) -> list[tuple[int, int, str]]:
    """(start, end, cited text) of what each source is cited for: the first sentence and
    the rest (``Hello from the fake upstream.`` / ``You said: …``)."""
    cut = text.find(". ")
    if cut < 0:
        return [(0, len(text), text)] if text else []
    rest = text[cut + 2 :]
    return [(0, cut + 1, text[: cut + 1]), *([(cut + 2, len(text), rest)] if rest else [])]


def char_locations(text: str, cited: bool = True) -> list[dict]:
    entries = []
    for (url, title), (start, end, quote) in zip(SOURCES, segments(text), strict=False):
        entry = {"type": "char_location", "url": url, "title": title, "source_title": title,
                 "start_char_index": start, "end_char_index": end}  # fmt: skip
        entries.append({**entry, "cited_text": quote} if cited else entry)
    return entries


def openai(turn: Turn) -> None:
    rid = f"resp_fake{turn.number:06d}"
    frames = turn.frames
    for kind in ("response.created", "response.in_progress"):
        frames.append(status(type=kind, status="in_progress", response_id=rid))
    if turn.search:
        web_search_calls(turn, f"ws_fake{turn.number:06d}")
    if text_or_failure(turn, STREAM_ERROR["openai"]):
        return
    found = char_locations(turn.text) if turn.search else []
    frames += [frame("citations", found)] * 2 if found else []
    frames.append(frame("openai_response_id", {"id": rid}))
    frames += [frame("citations", found)] if found else []
    if turn.incomplete:
        frames.append(turn.error(INCOMPLETE, event="warning"))
    frames.append(done(**({"citations": found} if found else {})))


def web_search_calls(turn: Turn, item_id: str) -> None:
    for step in ("in_progress", "searching", "completed"):
        turn.frames.append(
            status(type=f"response.web_search_call.{step}", item_id=item_id, output_index=0)
        )


def xai(turn: Turn) -> None:
    hexa = secrets.token_hex(16)
    rid = f"{hexa[:8]}-{hexa[8:12]}-{hexa[12:16]}-{hexa[16:20]}-{hexa[20:]}"
    for kind in ("response.created", "response.in_progress"):
        turn.frames.append(status(type=kind, status="in_progress", response_id=rid))
    if turn.search:
        web_search_calls(turn, f"ws_{secrets.token_hex(16)}")
    if text_or_failure(turn, STREAM_ERROR["xai"]):
        return
    found = []
    if turn.search:
        cited = zip(SOURCES, segments(turn.text), strict=False)
        found = [{"url": url, "title": title, "snippet": ""} for (url, title), _ in cited]
        turn.frames += [frame("citations", [entry]) for entry in found]
        turn.frames += [frame("citations", found)] * 3
    if turn.incomplete:
        turn.frames.append(turn.error(INCOMPLETE, event="warning"))
    turn.frames.append(done(**({"citations": found} if found else {})))


def openrouter(turn: Turn) -> None:
    rid = f"gen-{1727000000 + turn.number}-{random_text(20)}"
    frames = turn.frames
    for kind in ("response.created", "response.in_progress"):
        frames.append(status(type=kind, status="in_progress", response_id=rid))
    index = 0
    if turn.search:
        ws = f"ws_tmp_{random_text(24)}"
        frames.append(output_item("added", 0, ws, "web_search_call", "in_progress"))
        web_search_calls(turn, ws)
        frames.append(output_item("done", 0, ws, "web_search_call", "completed"))
        index = 1
    item = f"msg_tmp_{random_text(24)}"
    frames.append(output_item("added", index, item, "message", "in_progress"))
    frames.append(status(type="response.content_part.added", item_id=item, output_index=index))
    if text_or_failure(turn, STREAM_ERROR["openrouter"]):
        return
    first = char_locations(turn.text, cited=False) if turn.search else []
    frames += [frame("citations", [entry]) for entry in first]
    frames.append(status(type="response.output_text.done", item_id=item, output_index=index))
    full = char_locations(turn.text) if turn.search else []
    if full:
        frames += [frame("citations", full)] * 3
    else:
        frames.append(status(type="response.content_part.done", item_id=item, output_index=index))
        ending = "incomplete" if turn.incomplete else "completed"
        frames.append(output_item("done", index, item, "message", ending))
    ending = "incomplete" if turn.incomplete else "completed"
    frames.append(status(type=f"response.{ending}", status=ending, response_id=rid))
    if turn.incomplete:
        frames.append(turn.error(INCOMPLETE, event="warning"))
    frames.append(done(**({"citations": first + full} if full else {})))


def output_item(step: str, index: int, item: str, kind: str, state: str) -> bytes:
    return status(type=f"response.output_item.{step}", output_index=index, item_id=item,
                  item_type=kind, item_status=state)  # fmt: skip


def deepseek(turn: Turn) -> None:
    turn.frames.append(frame(None, {"delta": ""}))  # the API's role chunk
    if text_or_failure(turn, STREAM_ERROR["deepseek"]):
        return
    turn.frames.append(frame(None, {"delta": ""}))  # its finish chunk
    turn.frames.append(done())


def anthropic(turn: Turn) -> None:
    frames, number = turn.frames, turn.number
    frames.append(status(type="message_start", message_id=f"msg_01FakeUpstream{number:08d}",
                         model=SNAPSHOTS.get(turn.bot.model, turn.bot.model)))  # fmt: skip
    found: list[dict] = []
    if turn.search and not turn.broken:
        tool = f"srvtoolu_01FakeUpstream{number:08d}"
        frames.append(status(type="content_block_start", index=0,
                             content_block_type="server_tool_use", name="web_search",
                             tool_use_id=tool))  # fmt: skip
        frames.append(
            status(
                type="content_block_start",
                index=1,
                content_block_type="web_search_tool_result",
                tool_use_id=tool,
            )
        )
        found = anthropic_blocks(turn)
    elif text_or_failure(turn, STREAM_ERROR["anthropic"]):
        return
    reason = "max_tokens" if turn.incomplete else "end_turn"
    frames.append(status(type="message_delta", stop_reason=reason))
    if turn.incomplete:
        frames.append(turn.error(CLAUDE_MAX_TOKENS, event="warning"))
    frames.append(status(type="message_stop"))
    frames.append(done(**({"citations": found} if found else {})))


def anthropic_blocks(turn: Turn) -> list[dict]:
    """One text block per cited segment: its citations event, then its deltas."""
    found, pieces, position = [], list(turn.pieces), 0
    cited = list(zip(SOURCES, segments(turn.text), strict=False))
    for index, ((url, title), (_, end, quote)) in enumerate(cited):
        entry = {"type": "web_search_result_location", "cited_text": quote, "title": title,
                 "url": url, "content_block_index": index + 2}  # fmt: skip
        found.append(entry)
        turn.frames.append(frame("citations", [entry]))
        block = []
        while pieces and (position < end or index == len(cited) - 1):
            block.append(pieces.pop(0))
            position += len(block[-1])
        deltas(turn, block)
    deltas(turn, pieces)
    return found


def google(turn: Turn) -> None:
    extra: dict = {}
    if turn.search:
        turn.frames += [status(type="google_search_call")] * 2
        link = f"https://example.com/search?q={turn.message.replace(' ', '+')}"
        chip = (f'<style>{GROUNDING_STYLE}</style><div class="container"><a class="chip" '
                f'href="{link}">{turn.message}</a></div>')  # fmt: skip
        extra["grounding_metadata"] = {"searchEntryPoint": {"renderedContent": chip}}
        turn.frames.append(frame("grounding_metadata", extra["grounding_metadata"]))
    if turn.broken:  # the Interactions parser marks the error without text: swallowed
        deltas(turn, turn.pieces[:2])
        turn.frames.append(done())
        return
    deltas(turn)
    if turn.search:
        found = []
        for (url, title), (start, end, _) in zip(SOURCES, segments(turn.text), strict=False):
            found.append({"type": "url_citation", "url": url, "title": title,
                          "source_title": title, "start_index": start,
                          "end_index": end})  # fmt: skip
        turn.frames.append(frame("citations", found))
        extra["citations"] = found
    turn.frames.append(done(**extra))
