"""llm-chatgptfree: the free chat of chatgptfree.ai, and of any WordPress site running the
"AI Power" (AI Puffer) chat box, as llm models.

A prompt is a short story, told once for both plugin generations:

1. find the chat box: the page's markup says which generation runs there (1.x:
   ``wpaicg-chat-shortcode`` boxes with ``data-nonce``; 2.x: ``data-config`` JSON per bot);
   what it says is kept on disk for ten hours, so most prompts skip this step;
2. send the whole conversation as one message: 1.x posts one form to ``admin-ajax.php``;
   2.x caches the message (``aipkit_cache_sse_message``) and then opens its stream
   (``aipkit_frontend_chat_stream``);
3. read the answer as it arrives and yield its text; a rejected nonce, a lost cache key or a
   blip before the first word is handled once, inside, so that a chat goes on.

Reading order: the hooks and the models; the core (``Exchange``, which does no I/O: it
yields ``Request``-like steps and gets replies back); the page; each protocol generation in
its own section; the transport (the only code that touches the network); storage; and the
commands.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import codecs
import contextlib
import functools
import html
import ipaddress
import json
import os
import re
import secrets
import ssl
import stat
import string
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
import weakref
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from dataclasses import fields as fields_of
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar

import click
import httpx2
import llm
from llm.parts import AttachmentPart, StreamEvent, TextPart
from pydantic import ConfigDict, Field, ValidationInfo, field_validator

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
ISSUES_URL = "https://github.com/llm-chatgptfree/llm-chatgptfree/issues"
SITE_ENV = "CHATGPTFREE_SITE"
COOKIES_KEY = "chatgptfree"
COOKIES_ENV = "CHATGPTFREE_COOKIES"
USER_AGENT_ENV = "CHATGPTFREE_USER_AGENT"
PROXY_ENV = "CHATGPTFREE_PROXY"
IMPERSONATE_ENV = "CHATGPTFREE_IMPERSONATE"
CACHE_BUSTER = "nocache"
PREFERRED_BOT = re.compile(r"gpt[\s-]*4o[\s-]*mini", re.IGNORECASE)  # the seed's model

# chatgptfree.ai's bots as public clients of it list them (protocol-2x §9): what a fresh
# install offers before `llm chatgptfree refresh` has read the site itself.
SEED_BOTS = (
    ("25865", "GPT-4o Mini"),
    ("25871", "GPT-5 Nano"),
    ("25874", "Gemini"),
    ("25873", "DeepSeek"),
    ("25875", "Claude"),
    ("25872", "Grok"),
    ("25870", "Llama"),
    ("25869", "Qwen"),
    ("29624", "Perplexity"),
)
# chatgptfree.ai's bots with an image upload on their chat box (imageUploadEnabledUI):
# what a fresh install knows before `llm chatgptfree refresh` has read the page.
SEED_IMAGE_BOTS = frozenset({"25865", "25874", "25875"})
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")  # what the chat box uploads
XAI_IMAGE_TYPES = ("image/jpeg", "image/png")  # xAI refuses WebP inside the stream
MAX_IMAGES = 4  # the site's too_many_images
POST_MAX_SIZE = 8 * 2**20  # PHP's default post_max_size: a larger POST loses every field
IMAGE_BYTES_LIMIT = (POST_MAX_SIZE - 2048) * 3 // 4  # images that fit it, as base64

DEFAULT_TIMEOUT = 120.0  # seconds, as in gpt4free
ANSWER_TIME_LIMIT = 1800.0  # seconds a whole answer may take once it has begun
CACHE_MAX_AGE = 10 * 3600  # WordPress nonces live 12 to 24 hours
RETRY_PAUSE = 0.5  # seconds before the single retry of a transient failure
DRAIN_SECONDS = 0.25  # how long to wait for a body's end after the answer's end marker
READ_AHEAD = 256 * 2**10  # bytes a task may read ahead of the answer's reader
LOCK_SECONDS = 10.0  # longest wait for another process's lock on a file of ours
MAX_TIMEOUT = 7 * 24 * 3600.0  # a timeout longer than a week is taken as a week
PAGE_LIMIT = 8 * 2**20  # bytes of a page (after decompression) worth reading
SMALL_BODY_LIMIT = 256 * 2**10  # bytes of a JSON reply or an error page
ANSWER_LIMIT = 64 * 2**20  # bytes of one answer body
LINE_LIMIT = 8 * 2**20  # characters of one line of a stream, or of one event's data
FILE_LIMIT = 16 * 2**20  # bytes of a file of ours worth reading
MESSAGE_BUDGET = 100_000  # characters of a conversation sent as one message, at most
CONVERSATIONS_KEPT = 5000  # conversations whose site is kept (about 100 bytes each)
QUOTE_LIMIT = 240  # characters of server text quoted in an error sentence
MAX_REDIRECTS = 5
MAX_PROBE_BOTS = 20

USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
BROWSER_HEADERS = {"Accept-Language": "en-US,en;q=0.9"}  # and the User-Agent's client hints
CLIENT_HINTS = ("sec-ch-ua", "sec-ch-ua-mobile", "sec-ch-ua-platform")
TRANSIENT_STATUSES = {502, 503, 504}


# ---------------------------------------------------------------------------------------
# Errors: one sentence each
# ---------------------------------------------------------------------------------------


class ChatgptFreeError(llm.ModelError, click.ClickException):
    """A failure the user can act on, said in one sentence.

    An ``llm.ModelError`` for Python callers, and a ``click.ClickException`` too: ``llm
    chat`` has no error handling of its own, and click prints a ``ClickException`` that
    escapes a command as one ``Error: …`` line instead of a traceback.
    """

    def __init__(self, message: str) -> None:
        llm.ModelError.__init__(self, message)
        click.ClickException.__init__(self, message)

    def __str__(self) -> str:
        return self.message


class Retryable(ChatgptFreeError):
    """A failure before any answer arrived that is worth one more try after a pause."""


class NonceRejected(ChatgptFreeError):
    """The site refused the nonce: get a fresh one and send again, once."""


class KeyLost(ChatgptFreeError):
    """2.x: the cached message was gone when its stream was opened: send it again, once."""


class SiteChanged(ChatgptFreeError):
    """The site no longer has the chat action the cached chat box uses: read the page again."""


# ---------------------------------------------------------------------------------------
# The hooks
# ---------------------------------------------------------------------------------------


@llm.hookimpl
def register_models(register: Callable[..., None]) -> None:
    """The built-in model, a model per bot of the default site, and every saved site.

    Only files are read here, never the network: llm calls this on every start.
    """
    register(ChatgptFree(), AsyncChatgptFree(), aliases=ALIASES)
    for target, aliases in known_targets():
        register(ChatgptFree(target), AsyncChatgptFree(target), aliases=aliases)


@llm.hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(chatgptfree_group)


# ---------------------------------------------------------------------------------------
# The models
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where a model sends its prompts: a page, and the bot of that page."""

    model_id: str = MODEL_ID
    site: str | None = None  # None: -o site, $CHATGPTFREE_SITE or chatgptfree.ai
    bot: str | None = None  # None: the GPT-4o Mini bot if the page has one, else its first
    label: str = ""  # the bot's own name on the page
    provider: str = ""
    saved_as: str | None = None  # the saved site's name, when it is one
    image_upload: bool = False  # its page offers an image upload (imageUploadEnabledUI)


class _SharedModel:
    """What the sync and async models share: identity, options and ``__str__``."""

    can_stream = True

    class Options(llm.Options):
        model_config = ConfigDict(hide_input_in_errors=True)  # a proxy password, say

        site: str | None = Field(
            default=None,
            description=(
                f"URL of a page with an AI Power chat box (default {DEFAULT_SITE}, or ${SITE_ENV})"
            ),
        )
        timeout: float | None = Field(
            default=None,
            gt=0,
            allow_inf_nan=False,
            description=(
                f"Seconds the site may take to start answering, page and requests "
                f"included, and to pause mid-answer (default {DEFAULT_TIMEOUT:g})"
            ),
        )
        proxy: str | None = Field(
            default=None,
            description=(
                f"Proxy URL, e.g. http://host:3128 (a password is used but logged as ***; "
                f"or set ${PROXY_ENV})"
            ),
        )
        impersonate: str | None = Field(
            default=None,
            description=(
                "Send requests with a real browser's TLS fingerprint, e.g. chrome (needs "
                "llm-chatgptfree[browser]; 'none' turns it off)"
            ),
        )
        usage: bool | None = Field(
            default=None,
            description=(
                "2.x sites: ask the site afterwards which model answered and its token "
                "usage (one more request)"
            ),
        )
        web_search: bool | None = Field(
            default=None,
            description=(
                "2.x bots that allow it: let the model search the web (Google Search on "
                "Gemini) and list its sources after the answer (default: as the bot's "
                "page sets its globe toggle; false turns a default-on search off)"
            ),
        )

        @field_validator("site", "proxy", "impersonate")
        @classmethod
        def _checked(cls, value: str | None, info: ValidationInfo) -> str | None:
            """A URL made canonical, a proxy's password stashed, a browser profile known."""
            checks = dict(
                site=checked_site_url, proxy=stash_proxy, impersonate=checked_impersonation
            )
            return None if value is None else checks[info.field_name](value)

    def __init__(self, target: Target | None = None) -> None:
        self.target = target or Target()
        self.model_id = self.target.model_id
        self.attachment_types = frozenset(image_types(self.target))

    def exchange(self, prompt: llm.Prompt, response: Any, conversation: Any) -> Exchange:
        """The prompt's exchange, made in the caller's thread; a long conversation's
        shortening told on stderr, before the answer."""
        exchange = Exchange(self.target, prompt, response, conversation, self.attachment_types)
        if exchange.left_out:
            click.echo(left_out_notice(exchange.left_out), err=True)
        return exchange

    def __str__(self) -> str:
        kind = " (async)" if isinstance(self, llm.AsyncModel) else ""
        return f"ChatgptFree{kind}: {self.model_id} ({describe_target(self.target)})"

    def _validate_attachments(self, attachments: list[llm.Attachment] | None = None) -> None:
        """llm's check of a prompt's attachments, before anything is sent: one sentence
        each for a bot without image upload, a type, too many images, too many bytes."""
        refusal = attachments_refusal(self, list(attachments or []))
        if refusal is not None:
            raise AttachmentRefused(refusal)


class ChatgptFree(_SharedModel, llm.Model):
    """A chat box as a blocking model."""

    def execute(self, prompt, stream, response, conversation=None) -> Iterator[str]:
        exchange = self.exchange(prompt, response, conversation)
        if exchange.message is not None:
            exchange.notify = note_printer()
            pieces = run_blocking(exchange)
            try:
                for piece in pieces:
                    yield as_event(piece)
            finally:
                pieces.close()  # at once, as ``yield from`` would (a closed pipe, a break)
            exchange.tell_notes()


class AsyncChatgptFree(_SharedModel, llm.AsyncModel):
    """The same model for asyncio programs."""

    async def execute(self, prompt, stream, response, conversation=None) -> AsyncIterator[str]:
        exchange = self.exchange(prompt, response, conversation)
        if exchange.message is not None:
            exchange.notify = note_printer()
            async for piece in drive(exchange):
                yield as_event(piece)
            exchange.tell_notes()


class AttachmentRefused(ChatgptFreeError, ValueError):
    """An attachment the chat box cannot take: refused before anything is sent."""


class Sources(str):
    """The numbered list of an answer's sources, shown after it: text for the user, kept
    apart from the answer (its own part, marked) so that no later turn replays it."""


SOURCES_MARK = {"llm_chatgptfree": {"sources": True}}
SOURCES_PART = 1_000_000  # a part index of its own, after the answer's


def as_event(piece: str) -> Any:
    """What ``execute`` yields for a piece of text: the text, or the sources' own part."""
    if isinstance(piece, Sources):
        return StreamEvent(
            "text", str(piece), part_index=SOURCES_PART, provider_metadata=SOURCES_MARK
        )
    return piece


def is_sources_part(part: Any) -> bool:
    metadata = getattr(part, "provider_metadata", None)
    return isinstance(metadata, dict) and metadata.get("llm_chatgptfree", {}).get("sources") is True


def in_command_line() -> bool:
    """True inside an ``llm`` command (a click context), not for a Python caller."""
    return click.get_current_context(silent=True) is not None


def note_printer() -> Callable[[str], None] | None:
    """Where progress notes ("Searching the web…") go: stderr when it is a terminal and
    this is the ``llm`` command; nowhere otherwise."""
    if not (in_command_line() and sys.stderr.isatty()):
        return None
    return lambda note: click.echo(click.style(note, dim=True), err=True)


def image_types(target: Target) -> tuple[str, ...]:
    """The attachment types of a bot model: what its chat box uploads, if it has an upload."""
    if not target.image_upload or target.bot is None:
        return ()
    return upload_types(target.provider)


def upload_types(provider: str) -> tuple[str, ...]:
    """The image types a chat box uploads to the model API of ``provider``."""
    return XAI_IMAGE_TYPES if provider.lower() == "xai" else IMAGE_TYPES


def type_names(types: Iterable[str]) -> str:
    names = [{"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WebP"}[t] for t in types]
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)


def image_bot_advice(model: _SharedModel) -> str:
    """A model that takes images, from the same site if one does."""
    site = model.target.site or DEFAULT_SITE
    takers = [t for t, _ in known_targets() if image_types(t)]
    same = [t for t in takers if (t.site or DEFAULT_SITE) == site] or takers
    if not same:
        return "; no bot known to this plugin takes images (run 'llm chatgptfree refresh')"
    names = " or ".join(f"-m {t.model_id}" for t in same[:3])
    return f": use a bot whose chat box has an image upload, e.g. {names}"


def attachments_refusal(model: _SharedModel, attachments: list[llm.Attachment]) -> str | None:
    """Why the prompt's attachments cannot go to this model's chat box, or None."""
    if not attachments:
        return None
    types = model.attachment_types
    if not types:
        return f"{model.model_id} takes no images{image_bot_advice(model)}."
    if len(attachments) > MAX_IMAGES:
        return (
            f"The chat box takes at most {MAX_IMAGES} images per message; "
            f"{len(attachments)} are attached."
        )
    allowed = [t for t in IMAGE_TYPES if t in types]
    for attachment in attachments:
        kind = attachment_type(attachment)
        if kind not in types:
            name = attachment.path or attachment.url or "an attachment"
            return (
                f"{model.model_id} takes {type_names(allowed)} images only, and "
                f"{one_line(str(name), 80)} is {kind or 'of an unknown type'}."
            )
    sizes = [known_size(a) for a in attachments]
    if None not in sizes:
        return post_size_refusal(sum(sizes))  # type: ignore[arg-type]
    return None


def attachment_type(attachment: llm.Attachment) -> str | None:
    try:
        kind = attachment.resolve_type()
    except Exception:  # a URL llm could not reach: said when it is fetched
        return None
    return kind.split(";")[0].strip().lower() if isinstance(kind, str) else None


def known_size(attachment: llm.Attachment) -> int | None:
    """The bytes of an attachment without reading it (a file, or content), else None."""
    if attachment.content:
        return len(attachment.content)
    if attachment.path:
        with contextlib.suppress(OSError):
            return os.path.getsize(attachment.path)
    return None


def image_post_size(raw: int) -> int:
    """The bytes a message's images add to the cache POST: base64 adds a third."""
    return 4 * ((raw + 2) // 3) + 60


def post_size_refusal(raw: int, message: int = 0) -> str | None:
    """One sentence when images of ``raw`` bytes would make the POST larger than PHP's
    default ``post_max_size`` (then the site drops every field and answers '0')."""
    if image_post_size(raw) + message + 2048 <= POST_MAX_SIZE:
        return None
    return (
        f"The images come to {megabytes(raw)}, and the site takes a message of "
        f"{megabytes(POST_MAX_SIZE)} at most (PHP's default post_max_size), which leaves "
        f"about {megabytes(IMAGE_BYTES_LIMIT)} for images as base64 adds a third: send "
        "smaller images."
    )


def megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


def image_kind(data: bytes) -> str | None:
    """The type of an image by its first bytes: JPEG, PNG or WebP, else None."""
    if data[:2] == b"\xff\xd8":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def describe_target(target: Target) -> str:
    """What ``llm models`` says of a model, after its id."""
    if target.saved_as is None and target.bot is None:
        return "free chat of chatgptfree.ai, its GPT-4o Mini bot"
    where = host_of(target.site or DEFAULT_SITE)
    if target.bot is None:
        return f"chat box of {public_url(target.site or DEFAULT_SITE)}"
    name = target.label or f"bot {target.bot}"
    via = f" via {target.provider}" if target.provider else ""
    return f"{name}{via}, bot {target.bot} of {where}"


def known_targets() -> Iterator[tuple[Target, tuple[str, ...]]]:
    """Every model besides the built-in one, with its aliases, from files only.

    Every id is unique: the default site's bots make way for the saved sites' names
    (``chatgptfree/NAME``), which ``sites add`` keeps clear of the bots' ids."""
    try:
        sites = SITES_FILE.load()
    except StorageError as error:
        click.echo(f"llm-chatgptfree: saved sites ignored: {error}", err=True)
        sites = {}
    default = default_site()
    for bot in warn_storage(lambda: site_bots(default, is_chatgptfree_ai(default), set(sites))):
        aliases = tuple(f"chatgptfree/{alias}" for alias in bot.aliases)
        yield bot_target("chatgptfree", bot), aliases
    for site in sites.values():
        yield Target(site.model_id, site.url, site.bot, saved_as=site.name), ()
        for bot in warn_storage(lambda url=site.url: site_bots(url, seed=False)):
            yield bot_target(site.model_id, bot, saved_as=site.name), ()


def warn_storage(read: Callable[[], list[Bot]]) -> list[Bot]:
    """The bots ``read`` finds; none, said on stderr, when their file cannot be used."""
    try:
        return read()
    except StorageError as error:
        click.echo(f"llm-chatgptfree: bots ignored: {error}", err=True)
        return []


def bot_target(prefix: str, bot: Bot, saved_as: str | None = None) -> Target:
    """The model ``PREFIX/BOT`` of one bot of a site."""
    return Target(
        model_id=f"{prefix}/{bot.slug}",
        site=bot.page,
        bot=bot.id,
        label=bot.label,
        provider=bot.provider,
        saved_as=saved_as,
        image_upload=bot.image_upload,
    )


# ---------------------------------------------------------------------------------------
# The conversation becomes one message
# ---------------------------------------------------------------------------------------


Message = tuple[str, str, list[llm.Attachment]]  # role, text and attachments of one message


def conversation_messages(prompt: llm.Prompt) -> list[Message]:
    """(role, text, attachments) of every message: system prompt, earlier turns, then
    this prompt.

    ``prompt.messages`` is the whole chain in ``llm chat``, ``llm -c`` and Python
    conversations alike; from the second turn on it is the only place that still holds
    the system prompt. An earlier blank turn (a blank line typed in ``llm chat``) and the
    empty reply it got are left out, and so are the sources this plugin listed after an
    answer: the model did not write them.
    """
    messages = [
        (
            m.role,
            "".join(
                part.text
                for part in m.parts
                if isinstance(part, TextPart) and not is_sources_part(part)
            ),
            [p.attachment for p in m.parts if isinstance(p, AttachmentPart) and p.attachment],
        )
        for m in prompt.messages
    ]
    turns: list[Message] = []
    after_blank = False
    for number, (role, text, attachments) in enumerate(messages, 1):
        if role == "user" and not text.strip() and not attachments and number < len(messages):
            after_blank = True
        elif not (role == "assistant" and after_blank and not text.strip()):
            after_blank = False
            turns.append((role, text, attachments))
    return turns


def image_plan(
    turns: list[Message], takes_images: bool
) -> tuple[list[tuple[str, str]], list[llm.Attachment]]:
    """The turns as text, and the images that go with the message.

    The site attaches images to the current message only, and a new conversation id
    carries the whole transcript each time. So the images of earlier turns go again with
    this one, newest first within ``MAX_IMAGES`` (this turn's own always), and the
    transcript says at each turn which attached image is which; an earlier image that is
    not sent again (too many, or a bot without image upload) is marked as such. The model
    is never told it sees an image that it does not get.
    """
    last = len(turns) - 1
    places = [(i, j) for i, (_, _, atts) in enumerate(turns) for j in range(len(atts))]
    current = [p for p in places if p[0] == last and turns[last][0] == "user"]
    earlier = [p for p in places if p not in current]
    room = max(MAX_IMAGES - len(current), 0) if takes_images else 0
    chosen = (earlier[len(earlier) - room :] if room else []) + current
    numbers = {place: n for n, place in enumerate(chosen, 1)}
    texts = []
    for i, (role, text, attachments) in enumerate(turns):
        if attachments and len(turns) > 1:
            notes = [
                f"[Image {numbers[(i, j)]} is attached.]"
                if (i, j) in numbers
                else "[An image was attached here; it is not sent again.]"
                for j in range(len(attachments))
            ]
            text = "\n".join([text, *notes]) if text.strip() else "\n".join(notes)
        texts.append((role, text))
    sent = [turns[i][2][j] for i, j in chosen]
    return texts, sent if takes_images else []


def transcript(turns: list[tuple[str, str]]) -> str:
    """gpt4free's ``format_prompt``: one message verbatim, several as a script."""
    if len(turns) == 1:
        return turns[0][1]
    lines = [f"{role.capitalize()}: {text}" for role, text in turns]
    return "\n".join(lines) + "\nAssistant:"


def message_plan(
    messages: list[Message], takes_images: bool
) -> tuple[list[tuple[str, str]], list[llm.Attachment], int]:
    """What a prompt sends: the turns as text, the images that go with them, and how many
    earlier messages were left out to keep within ``MESSAGE_BUDGET``. An image sent
    without a question asks to describe it, as the chat box would otherwise send nothing."""
    left_out = 0
    if messages and messages[-1][0] == "user":
        role, text, attachments = messages[-1]
        if attachments and not text.strip():
            text = "Describe this image." if len(attachments) == 1 else "Describe these images."
            messages = [*messages[:-1], (role, text, attachments)]
        messages, left_out = within_budget(messages)
    turns, images = image_plan(messages, takes_images)
    return turns, images, left_out


def within_budget(messages: list[Message]) -> tuple[list[Message], int]:
    """The messages to send, the oldest dropped (a question with its answer) while the
    transcript would be over ``MESSAGE_BUDGET`` characters; the system prompt and the new
    prompt are always sent. Also how many earlier messages were left out."""
    system = messages[:1] if messages and messages[0][0] == "system" else []
    earlier, latest = messages[len(system) : -1], messages[-1:]
    size = sum(map(transcript_size, messages))
    dropped = 0
    while earlier and size > MESSAGE_BUDGET:
        size -= sum(map(transcript_size, earlier[:2]))
        earlier, dropped = earlier[2:], dropped + len(earlier[:2])
    return system + earlier + latest, dropped


def transcript_size(message: Message) -> int:
    """The characters a message takes in the transcript at most: its role's label, its
    text, and a line that marks each of its images."""
    return len(message[1]) + 12 + 53 * len(message[2])


def left_out_notice(dropped: int) -> str:
    return (
        f"llm-chatgptfree: this conversation is over {MESSAGE_BUDGET:,} characters, so its "
        f"first {dropped:,} messages were not sent: the model sees the latest ones only."
    )


def in_llm_chat() -> bool:
    """True inside the ``llm chat`` command (a click context named "chat")."""
    context = click.get_current_context(silent=True)
    while context is not None:
        if context.info_name == "chat":
            return True
        context = context.parent
    return False


# ---------------------------------------------------------------------------------------
# The core: one prompt's exchange with the site, as steps for a driver (no I/O here)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One HTTP request, as the core wants it sent."""

    method: str
    url: str
    headers: dict[str, str]
    form: dict[str, str] | None = None
    multipart: bool = False  # the form as multipart/form-data (a message with images)


@dataclass
class Reply:
    """The head of a reply; its body is read with ``ReadBody`` or ``StreamBody``."""

    status: int
    reason: str
    headers: dict[str, str]  # lower-case names
    url: str
    set_cookies: list[str] = field(default_factory=list)


@dataclass
class Send:
    """Step: send ``request``; the driver hands back its ``Reply`` once the head is in."""

    request: Request
    deadline: float  # time.monotonic() by which the head must be in
    idle: float  # longest wait for any one read or write


@dataclass
class ReadBody:
    """Step: hand back the last reply's whole body (decoded), at most ``limit`` bytes; or,
    with ``complete``, as soon as what came is whole (a JSON reply on a connection that
    stays open, under a Content-Length that overstates it)."""

    limit: int
    deadline: float
    complete: Callable[[bytes], bool] | None = None


@dataclass
class StreamBody:
    """Step: feed the last reply's body to ``reader``, yielding its text as it comes.

    Until the first text the ``deadline`` holds; then each read may take ``idle`` and
    the whole answer lasts until ``answer_deadline``. Reading stops at the reader's end
    marker; what follows it is drained briefly, so that the connection can be kept.
    """

    reader: AnswerReader
    deadline: float
    idle: float
    answer_deadline: float


@dataclass
class Pause:
    """Step: wait ``seconds``."""

    seconds: float


@dataclass
class Lock:
    """Step: take the lock ``key`` by ``deadline``; held until ``Unlock`` or the visit ends."""

    key: str
    deadline: float


@dataclass
class Unlock:
    """Step: release the lock ``key``."""

    key: str


@dataclass
class Storage:
    """Step: run ``work`` (reading or writing the plugin's files, or a browser's clearance)
    off the event loop, and hand back what it returns, or throw in what it raised."""

    work: Callable[[], Any]


Step = Send | ReadBody | StreamBody | Pause | Lock | Unlock | Storage
Steps = Generator[Step | str, Any, None]


class Visit:
    """A visit to a site, as a generator of steps (``steps()``); no I/O here.

    A driver performs each step the generator yields and sends back its result, or throws
    in the exception it met; strings the generator yields are text for the user. Files are
    read and written through ``Storage`` steps too. What every visit shares lives here: the
    files it needs, requests with each host's own cookies, deadlines, the page and its
    redirects, and what a failure of the way to the site means.
    """

    def __init__(
        self,
        site: str,
        timeout: float,
        settings: TransportSettings,
        bot: str | None = None,
        choice: str = "first",
    ) -> None:
        self.site = site
        self.host = host_of(site)
        self.bot = bot
        self.choice = choice  # "first", "preferred" (GPT-4o Mini) or a bot id: the cache key
        self.timeout = min(timeout, MAX_TIMEOUT)
        self.settings = settings
        self.user_agent = os.environ.get(USER_AGENT_ENV) or None
        self.cookies = CookieJar({})
        self.secrets = Secrets.of(self.cookies, settings)
        self.trusted = frozenset({origin_of(site)})
        self.identity = Identity("", "")
        self.deadline = time.monotonic() + timeout

    def steps(self) -> Steps:
        raise NotImplementedError

    def read_files(self) -> Generator[Step, Any, None]:
        """What the visit needs from files: cookies, the saved sites, this install's ids."""
        self.cookies, self.trusted, self.identity = yield Storage(
            lambda: (CookieJar.for_prompt(), trusted_origins(self.site), identity())
        )
        self.secrets = Secrets.of(self.cookies, self.settings)
        self.user_agent = os.environ.get(USER_AGENT_ENV) or None
        earned_with = None if self.user_agent else self.cookies.user_agent_for(self.site)
        if earned_with:  # a clearance works only for the browser that earned it: play that one
            self.user_agent, self.settings = earned_with, self.settings.played_by(earned_with)

    def fetch_page(self, bust: bool) -> Generator[Step, Any, Page]:
        """GET the page, following redirects within the sites the user chose."""
        url = cache_busting(self.site) if bust else self.site
        for _hop in range(MAX_REDIRECTS + 1):
            request = Request("GET", url, page_headers(self.user_agent, bust))
            reply = yield from self.request(request, public_url(url))
            location = reply.headers.get("location")
            if reply.status in (301, 302, 303, 307, 308) and location:
                url = self.redirect_target(url, location)
                continue
            body = yield from self.read_body(PAGE_LIMIT, public_url(url))
            return Page(public_url(url), reply.status, reply, decode_text(body, reply))
        raise ChatgptFreeError(f"{self.host} redirects more than {MAX_REDIRECTS} times.")

    def chat_boxes(self, page: Page, hint: str = "") -> list[ChatBox]:
        """The chat boxes of a fetched page; or why there are none, in one sentence."""
        if page.status != 200:
            raise status_error(page.reply, page.text, f"{self.host} (the page)")
        boxes = read_chat_boxes(page.text, page.url)
        if not boxes:
            if is_cloudflare_challenge(page.reply, page.text):
                raise status_error(page.reply, page.text, self.host)
            raise ChatgptFreeError(f"No AI Power chat box on {page.url}{hint}.")
        return boxes

    def redirect_target(self, url: str, location: str) -> str:
        """Where a redirect leads, if that is a site the user chose; else an error."""
        target = safe_urljoin(url, location)
        if target is None or not is_http_url(target):
            raise ChatgptFreeError(f"{self.host} redirects to an address that is not a web page.")
        if not same_site(url, target) and origin_of(target) not in self.trusted:
            raise ChatgptFreeError(
                f"{public_url(url)} redirects to {public_url(target)}, another site; not "
                f"following. If you trust it, use it directly: -o site {public_url(target)}"
            )
        return target

    def check_endpoint(self, box: ChatBox, page: str) -> None:
        """Refuse a chat box that sends prompts to another origin than its page's, unless
        the user saved that origin as a site."""
        endpoint = origin_of(box.ajax_url)
        if endpoint != origin_of(page) and endpoint not in self.trusted:
            raise ChatgptFreeError(
                f"The chat box on {page} sends prompts to {endpoint}, another site; not "
                f"sending. If you trust it, save it first: llm chatgptfree sites add NAME "
                f"{site_advice(endpoint, self.cookies.hosts())}"
            )

    # -- requests, and what to make of failures ---------------------------------------------

    def request(self, request: Request, where: str) -> Generator[Step, Any, Reply]:
        """Send ``request`` with the cookies of its host only; the reply's head comes back."""
        cookie = self.cookies.header_for(request.url)
        if cookie:
            request = replace(request, headers={**request.headers, "Cookie": cookie})
        try:
            reply = yield Send(request, self.deadline, self.timeout)
        except TransportProblem as problem:
            raise self.transport_error(problem, where) from None
        self.cookies.remember(reply)
        return reply

    def read_body(
        self, limit: int, where: str, complete: Callable[[bytes], bool] | None = None
    ) -> Generator[Step, Any, bytes]:
        try:
            return (yield ReadBody(limit, self.deadline, complete))
        except TransportProblem as problem:
            raise self.transport_error(problem, where) from None

    def post(
        self, box: ChatBox, form: dict[str, str], where: str, multipart: bool = False
    ) -> Generator[Step, Any, Reply]:
        """POST ``form`` to the chat box's admin-ajax, as the plugin's JavaScript does."""
        request = post_request(box, form, self.user_agent, multipart)
        return (yield from self.request(request, where))

    def post_for_json(
        self, box: ChatBox, form: dict[str, str], where: str, multipart: bool = False
    ) -> Generator[Step, Any, tuple[Reply, str]]:
        """POST ``form`` and read its JSON reply (read no further than its end)."""
        reply = yield from self.post(box, form, where, multipart)
        body = yield from self.read_body(SMALL_BODY_LIMIT, where, json_complete)
        return reply, decode_text(body, reply)

    def transport_error(self, problem: TransportProblem, where: str) -> ChatgptFreeError:
        """A failure of the way to the site, before any answer arrived."""
        if isinstance(problem, TimedOut):
            return ChatgptFreeError(
                f"{where} did not answer within {self.timeout:g} s. Try again later, or "
                "wait longer with -o timeout 300."
            )
        if advice := certificate_problem(where, problem.detail):
            return ChatgptFreeError(advice)
        if isinstance(problem, ProxyFailed):
            return ChatgptFreeError(sentence(f"The proxy failed: {problem.detail}"))
        if isinstance(problem, CannotConnect) and problem.proxy:
            return ChatgptFreeError(
                sentence(f"Could not reach the proxy {problem.proxy}: {problem.detail}")
            )
        if isinstance(problem, CannotConnect):
            return ChatgptFreeError(sentence(f"Could not reach {where}: {problem.detail}"))
        if isinstance(problem, Dropped):
            return Retryable(f"{where} dropped the connection twice before answering. Try again.")
        if isinstance(problem, TooLarge):
            return ChatgptFreeError(
                f"{where} sent more than {problem.limit // 2**20} MB; giving up on it."
            )
        return ChatgptFreeError(sentence(f"Talking to {where} failed: {problem.detail}"))


class Exchange(Visit):
    """One prompt sent to a chat box and its answer read.

    Everything that decides (which requests, how to read the answer, what to retry, what
    to tell the user) is here, in the generation of the chat box (``ChatBox.protocol``)
    and in the pure functions they call; the driver only does.
    """

    def __init__(
        self,
        target: Target,
        prompt: llm.Prompt,
        response: Any,
        conversation: Any = None,
        image_types: Iterable[str] = (),
    ) -> None:
        options = prompt.options
        super().__init__(
            site=options.site or target.site or default_site(),
            timeout=options.timeout or DEFAULT_TIMEOUT,
            settings=TransportSettings.of(options.proxy, options.impersonate),
            bot=target.bot,
            choice=target.bot or ("first" if target.saved_as else "preferred"),
        )
        self.target = target
        self.response = response
        self.conversation_id = str(getattr(conversation, "id", "") or "") or None
        self.began_on: str | None = None  # the page the conversation is kept with, if read
        self.site_asked: str | None = options.site
        self.want_usage = bool(options.usage)
        self.web_search: bool | None = getattr(options, "web_search", None)
        self.in_chat = in_llm_chat()  # decided here, in the caller's thread
        self.in_command_line = in_command_line()
        self.chars_shown = 0
        self.last_text = ""
        self.notify: Callable[[str], None] | None = None  # progress notes, if shown
        self.notes: list[str] = []  # said on stderr after the answer
        self.image_types = tuple(image_types)
        self.uploads: list[dict[str, str]] | None = None  # 2.x: the images as uploaded
        messages = conversation_messages(prompt)
        self.resumable = any(message[0] == "assistant" for message in messages)
        turns, self.images, self.left_out = message_plan(messages, bool(self.image_types))
        self.message: str | None = transcript(turns) if turns else ""
        check_prompt_text(self.message)
        warn_unused_key(response)
        if not turns or turns[-1][0] != "user" or not turns[-1][1].strip():
            if not self.in_chat:
                raise ChatgptFreeError("The prompt is empty: nothing was sent.")
            self.message = None  # a blank line in `llm chat`: nothing to send, chat goes on

    # -- the story -------------------------------------------------------------------------

    def steps(self) -> Steps:
        """The whole exchange; every failure leaves it as one sentence without secrets."""
        self.deadline = time.monotonic() + self.timeout  # from the first step, not from __init__
        try:
            yield from self.stay_with_the_conversation()
            yield from self.read_files()
            yield from self.attempts()
            known = self.began_on is not None and same_page(self.began_on, self.site)
            if self.conversation_id and not known:  # written once per conversation
                yield Storage(lambda: remember_conversation(self.conversation_id, self.site))
        except ChatgptFreeError as error:
            if self.chars_shown and not self.last_text.endswith("\n"):
                yield "\n"  # the partial answer and the error never share a line
            raise self.final(error) from None

    def stay_with_the_conversation(self) -> Steps:
        """A conversation goes on where it began: llm does not carry ``-o site`` into
        ``-c``, so the site of each conversation is kept by its id; another site asked
        for by name is refused, naming both."""
        if not (self.conversation_id and self.resumable):
            return
        conversation = self.conversation_id
        began_on = yield Storage(lambda: conversation_site(conversation))
        self.began_on = began_on
        if began_on is None or same_page(began_on, self.site):
            return
        if self.site_asked is not None:
            raise ChatgptFreeError(
                f"This conversation is with {public_url(began_on)}, not "
                f"{public_url(self.site_asked)}: continue it without -o site, or start a "
                "new one (without -c) to talk to that site."
            )
        self.site, self.host = began_on, host_of(began_on)

    def attempts(self) -> Steps:
        """Find the chat box and talk to it; refresh what went stale, or retry a blip, once."""
        box: ChatBox | None = None
        stale: ChatBox | None = None
        refreshed = retried = cleared = False
        for _attempt in range(4):  # a first try, one refresh, one retry, one clearance at most
            try:
                if box is None:
                    box = yield from self.chat_box(stale)
                yield from box.protocol.talk(self, box)
                return
            except CloudflareChallenge:
                if cleared or self.chars_shown or not auto_clearance_wanted():
                    raise
                cleared = True  # the setting: one headless clearance, then the page afresh
                yield Storage(lambda: auto_clearance(self.site))
                yield from self.read_files()
                box = stale = None
            except (NonceRejected, KeyLost, SiteChanged) as problem:
                if refreshed:
                    raise self.still_stale(problem) from None
                refreshed = True
                stale, box = box, (yield from self.refreshed(box, problem))
            except Retryable as problem:
                if retried or self.chars_shown:
                    raise ChatgptFreeError(str(problem)) from None
                retried = True
                yield Pause(RETRY_PAUSE)
        raise ChatgptFreeError(f"{self.host} kept failing: try again later.")

    def refreshed(
        self, box: ChatBox | None, problem: ChatgptFreeError
    ) -> Generator[Step, Any, ChatBox | None]:
        """What to use after ``problem``: the same box, a fresh nonce, or a fresh page."""
        if isinstance(problem, KeyLost) and box is not None:
            return box  # the nonce is fine: send both steps again
        if isinstance(problem, NonceRejected) and box is not None:
            fresh = yield from box.protocol.fresh_nonce(self, box)
            if fresh is not None:
                yield Storage(lambda: PAGE_CACHE.renew_nonce(self.site, box, fresh))
                return fresh
        return None  # read the page again, past any page cache

    def still_stale(self, problem: ChatgptFreeError) -> ChatgptFreeError:
        if isinstance(problem, NonceRejected):
            return ChatgptFreeError(
                f"{self.host} rejected a fresh nonce too: the site serves a stale cached "
                "page. Try again later, or point -o site at a page that is not cached."
            )
        if isinstance(problem, KeyLost):
            return ChatgptFreeError(
                f"{self.host} lost the message between its two steps twice ({problem}): try again."
            )
        return ChatgptFreeError(str(problem))

    def tell_notes(self) -> None:
        """What the site said to its user besides the answer (a token limit, say): one
        line each on stderr, after the answer, in the ``llm`` command."""
        if not self.in_command_line:
            return
        for note in self.notes:
            with contextlib.suppress(OSError, ValueError):
                sys.stdout.flush()
                if self.last_text and not self.last_text.endswith("\n"):
                    click.echo(err=True)  # the note on a line of its own
                click.echo(click.style(note, fg="yellow"), err=True)

    def final(self, error: ChatgptFreeError) -> ChatgptFreeError:
        """The sentence the user sees: secrets blanked, and in ``llm chat`` how to go on."""
        if isinstance(error, CloudflareChallenge):  # and what became of a stored clearance
            news = clearance_news(self.cookies.clearances.get(error.host.lower()))
            error = cloudflare_error(error.host, error.status, news)
        message = self.secrets.redact(str(error))
        if self.in_chat and self.resumable:
            message += " The conversation so far is saved: continue it with 'llm chat -c'."
        return ChatgptFreeError(message)

    # -- the chat box ----------------------------------------------------------------------

    def chat_box(self, stale: ChatBox | None) -> Generator[Step, Any, ChatBox]:
        """The cached chat box for this site and bot, or a fresh one from the page.

        After a stale box the page is read again past any page cache, unless a concurrent
        prompt already did so. One prompt per site reads the page at a time.
        """
        newer_than = stale.fetched_at if stale else 0.0
        recall = lambda: PAGE_CACHE.get(self.site, self.choice, newer_than)  # noqa: E731
        cached = yield Storage(recall)
        if cached is not None:
            return cached
        try:
            yield Lock(self.site, self.deadline)
        except TimedOut as problem:  # another prompt has been reading the page all along
            raise self.transport_error(problem, public_url(self.site)) from None
        cached = yield Storage(recall)
        if cached is None:
            page = yield from self.fetch_page(bust=stale is not None)
            boxes = self.chat_boxes(
                page, f": point -o site (or {SITE_ENV}) at a page that shows the chat"
            )
            cached = self.choose(page, boxes)
            yield Storage(lambda: PAGE_CACHE.put(self.site, self.choice, cached, boxes))
        yield Unlock(self.site)
        return cached

    def choose(self, page: Page, boxes: list[ChatBox]) -> ChatBox:
        """This prompt's chat box among a page's; or why it cannot be used."""
        box = choose_box(boxes, self.bot, self.choice == "preferred")
        if box is None:
            known = ", ".join(f"{b.bot_id} ({b.label or b.kind})" for b in boxes[:12])
            raise ChatgptFreeError(
                f"{page.url} has no bot {self.bot}; its chat boxes: {known}. Run 'llm "
                "chatgptfree refresh' to update the list of bots."
            )
        self.check_endpoint(box, page.url)
        return box

    def stream(self, reader: AnswerReader, where: str) -> Steps:
        """Read the answer into ``reader``; the driver yields its text as it arrives."""
        answer_deadline = time.monotonic() + ANSWER_TIME_LIMIT
        try:
            yield StreamBody(reader, self.deadline, self.timeout, answer_deadline)
        except TransportProblem as problem:
            reader.fail(
                reader.broke_off(problem.phrase(self.timeout))
                if reader.chars
                else self.transport_error(problem, where)
            )
        finally:
            self.chars_shown += reader.chars
            self.last_text = reader.last or self.last_text

    def forget_page(self) -> Steps:
        """The page's chat boxes are wrong (a bot is gone): read it afresh next time."""
        yield Storage(lambda: PAGE_CACHE.forget(self.site))

    # -- images ------------------------------------------------------------------------------

    def image_bytes(self, attachment: llm.Attachment) -> Generator[Step, Any, bytes]:
        """An attachment's bytes: given, from its file, or from its URL (never handed to
        the site as a URL), at most what one message can carry."""
        size = known_size(attachment)
        if size is not None and size > IMAGE_BYTES_LIMIT:
            raise AttachmentRefused(post_size_refusal(size) or "The image is too large.")
        if attachment.content or attachment.path:
            try:
                data = yield Storage(attachment.content_bytes)
            except OSError as error:
                raise ChatgptFreeError(
                    sentence(f"Cannot read {attachment.path}: {error.strerror or error}")
                ) from None
        elif attachment.url:
            data = yield from self.fetch_image(attachment.url, IMAGE_BYTES_LIMIT)
        else:
            raise AttachmentRefused("An attachment has no content: nothing was sent.")
        if len(data) > IMAGE_BYTES_LIMIT:
            raise AttachmentRefused(post_size_refusal(len(data)) or "The image is too large.")
        return data

    def fetch_image(self, url: str, limit: int) -> Generator[Step, Any, bytes]:
        """GET an image by URL with this plugin's bounds: its timeout, proxy, redirects and
        size; no cookies."""
        for _hop in range(MAX_REDIRECTS + 1):
            if not is_http_url(url):
                raise AttachmentRefused(f"The image {one_line(url, 80)} is not a web address.")
            where = f"the image {public_url(url)}"
            headers = with_browser_headers({"Accept": "image/*,*/*;q=0.8"}, self.user_agent)
            try:
                reply = yield Send(Request("GET", url, headers), self.deadline, self.timeout)
            except TransportProblem as problem:
                raise self.transport_error(problem, where) from None
            location = reply.headers.get("location")
            if reply.status in (301, 302, 303, 307, 308) and location:
                url = safe_urljoin(url, location) or ""
                continue
            if reply.status != 200:
                raise ChatgptFreeError(
                    f"Could not fetch {where}: HTTP {reply.status} {reply.reason}".strip() + "."
                )
            try:
                return (yield ReadBody(limit, self.deadline))
            except TooLarge:
                raise AttachmentRefused(
                    f"{where[0].upper()}{where[1:]} is over {megabytes(limit)}, more than "
                    "one message to the site can carry: send a smaller image."
                ) from None
            except TransportProblem as problem:
                raise self.transport_error(problem, where) from None
        raise ChatgptFreeError(f"The image {public_url(url)} redirects too often.")

    # -- what llm logs ----------------------------------------------------------------------

    def record(self, box: ChatBox, details: dict[str, Any], upstream_model: str | None) -> None:
        """``response_json`` for ``llm logs --json``, and a resolved model for plain logs."""
        where = {
            "site": box.page,
            "generation": box.generation,
            "release": box.release or None,
            "bot_id": box.bot_id,
            "bot": box.label or None,
            "provider": box.provider or None,
            "post_id": box.post_id,
        }
        merged = where | details | {"messages_left_out": self.left_out or None}
        self.response.response_json = {k: v for k, v in merged.items() if v not in (None, [])}
        self.response.set_resolved_model(resolved_model(box, upstream_model))


def site_advice(origin: str, cookie_hosts: Iterable[str]) -> str:
    """The site to suggest saving for ``origin``: as it is, or, when it is plain http and
    the user saved cookies for its host, its https address (the cookies never go in clear)."""
    names = {host_of(origin).lower(), (split_url(origin) or split_url("")).hostname}
    if not in_clear(origin) or not names & set(cookie_hosts):
        return f"{origin}/"
    https = "https://" + origin.partition("://")[2]
    return f"{https}/ (its cookies are sent over https only)"


def resolved_model(box: ChatBox, upstream_model: str | None) -> str:
    """What ``llm logs`` shows as the resolved model: which site and bot answered."""
    bot = f"{host_of(box.page)} {box.protocol.bot_name(box)}"
    return f"{upstream_model} via {bot}" if upstream_model else bot


# ---------------------------------------------------------------------------------------
# The page: chat boxes of both generations
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatBox:
    """What a page tells a client about one chat box (one bot)."""

    generation: str  # "1.x" (wpaicg chat box) or "2.x" (AIPKit, data-config)
    page: str  # the page it was read from, after redirects, without credentials
    ajax_url: str
    nonce: str
    post_id: str
    bot_id: str  # "0" for a 1.x default chat box
    label: str = ""  # 2.x: the bot's headerName
    provider: str = ""  # 2.x: OpenAI, Google, Claude, …
    kind: str = ""  # 1.x: shortcode or widget; 2.x: inline or popup
    url: str = ""  # 1.x: data-url, sent back as the "url" field
    release: str = ""  # the plugin release of the page's assets, when shown
    can_refresh_nonce: bool = False  # 2.x from 2.3.41: aipkit_get_frontend_chat_nonce
    fetched_at: float = 0.0
    # 2.x switches of the chat box; None: not known (a box cached by an older release)
    image_upload: bool | None = None  # imageUploadEnabledUI
    web_search: bool | None = None  # allowWebSearchTool
    google_grounding: bool | None = None  # allowGoogleSearchGrounding
    search_default: bool | None = None  # webToggleDefaultOn, the globe toggle's start

    def is_well_formed(self) -> bool:
        """True when every field has its type: a hand-edited cache file may differ."""
        return (
            self.generation in GENERATIONS
            and all(isinstance(getattr(self, f.name), FIELD_TYPES[f.type]) for f in fields_of(self))
            and is_http_url(self.ajax_url)
        )

    @property
    def protocol(self) -> Generation:
        """What the box's generation knows: its requests, answers and refusals."""
        return GENERATIONS[self.generation]


# what each type of a ChatBox field may hold, read back from a cache file
FIELD_TYPES: dict[str, Any] = {"str": str, "bool": bool, "bool | None": (bool, type(None))}
FIELD_TYPES["float"] = (int, float)


@dataclass
class Page:
    url: str
    status: int
    reply: Reply
    text: str


BOX_CLASSES_1X = ("wpaicg-chat-shortcode", "wpaicg-chatbox")
_ATTRIBUTE_NAME = re.compile(r"[^\s/>=][^\s/>=]*")
_UNQUOTED_VALUE = re.compile(r"[^\s>]*")
_SPACE = re.compile(r"[\s/]*")
_BLANK = re.compile(r"[ \t\n\r\f]*")
_RAW_TEXT_END = {"script": re.compile(r"</script", re.I), "style": re.compile(r"</style", re.I)}
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{0,15}")
_RELEASE = re.compile(r"gpt3-ai-content-generator/[^'\"\s<>]{0,200}?\?ver=(\d+(?:\.\d+){1,3})\b")
_SEARCH_NONCE = re.compile(r'"search_nonce"\s{0,8}:\s{0,8}"([0-9a-f]{10})"')
_WPAICG_AJAX_URL = re.compile(
    r'wpaicgParams\s{0,8}=\s{0,8}\{[^{}]{0,4096}?"ajax_url"\s{0,8}:\s{0,8}("(?:[^"\\]|\\.){0,2048}")'
)


def div_tags(page: str) -> Iterator[dict[str, str]]:
    """The attributes of every ``<div>`` start tag of a page, in order, entities decoded.

    A single forward pass (each character is looked at a bounded number of times), so that
    no page can make it slow: comments and script or style text are skipped, an
    unterminated quote ends the page, as in a browser.
    """
    position, end = 0, len(page)
    while (start := page.find("<", position)) != -1:
        if page.startswith("<!--", start):
            close = page.find("-->", start + 4)
            position = end if close == -1 else close + 3
            continue
        name = _TAG_NAME.match(page, start + 1)
        if name is None:
            position = start + 1
            continue
        attributes, position = read_attributes(page, name.end())
        tag = name.group().lower()
        if tag == "div":
            yield attributes
        elif tag in _RAW_TEXT_END:
            close_tag = _RAW_TEXT_END[tag].search(page, position)
            position = end if close_tag is None else close_tag.end()


def read_attributes(page: str, position: int) -> tuple[dict[str, str], int]:
    """The attributes of a start tag from ``position``, and where the tag ends."""
    attributes: dict[str, str] = {}
    end = len(page)
    while True:
        position = _SPACE.match(page, position).end()
        if position >= end or page[position] == ">":
            return attributes, position + 1
        name_match = _ATTRIBUTE_NAME.match(page, position)
        if name_match is None:  # a stray "=": skip it
            position += 1
            continue
        name, position = name_match.group().lower(), name_match.end()
        value = ""
        after = _BLANK.match(page, position).end()
        if after < end and page[after] == "=":
            after = _BLANK.match(page, after + 1).end()
            if after < end and page[after] in "\"'":
                close = page.find(page[after], after + 1)
                if close == -1:
                    return attributes, end  # an unterminated quote runs to the end
                value, position = page[after + 1 : close], close + 1
            else:
                raw = _UNQUOTED_VALUE.match(page, after)
                value, position = raw.group(), raw.end()
        attributes.setdefault(name, html.unescape(value) if "&" in value else value)


@dataclass
class PageText:
    """A page as the generations read their chat boxes from it."""

    text: str
    url: str

    @functools.cached_property
    def release(self) -> str:
        """The AI Power release in the page's asset URLs (``?ver=2.4.71``), or ``""``."""
        found = _RELEASE.search(self.text)
        return found.group(1) if found else ""


def read_chat_boxes(page: str, page_url: str) -> list[ChatBox]:
    """Every chat box of a page, of either generation, in page order (one per bot)."""
    scanned = PageText(page, page_url)
    boxes: list[ChatBox] = []
    seen: set[tuple[str, str]] = set()
    fetched = time.time()
    for attributes in div_tags(page):
        for protocol in GENERATIONS.values():
            box = protocol.chat_box(attributes, scanned)
            if box is not None and (box.generation, box.bot_id) not in seen:
                seen.add((box.generation, box.bot_id))
                boxes.append(replace(box, fetched_at=fetched))
    return boxes


def choose_box(boxes: list[ChatBox], bot: str | None, prefer_gpt_4o_mini: bool) -> ChatBox | None:
    """The box of ``bot``; or, for the built-in model, the GPT-4o Mini bot; else the first."""
    if bot is not None:
        return next((box for box in boxes if box.bot_id == bot), None)
    if prefer_gpt_4o_mini:
        preferred = next((box for box in boxes if PREFERRED_BOT.search(box.label)), None)
        if preferred is not None:
            return preferred
    return boxes[0] if boxes else None


def release_at_least(release: str, wanted: tuple[int, ...]) -> bool:
    try:
        return tuple(int(part) for part in release.split(".")) >= wanted
    except ValueError:
        return False


def is_cloudflare_challenge(reply: Reply, body: str) -> bool:
    """True for Cloudflare's "Just a moment..." interstitial."""
    if reply.status not in (403, 429, 503):
        return False
    if reply.headers.get("cf-mitigated", "").lower() == "challenge":
        return True
    head = body[:65536]
    return any(
        m in head for m in ("<title>Just a moment...</title>", "cf-please-wait", "_cf_chl_opt")
    )


def page_headers(user_agent: str | None, bust: bool) -> dict[str, str]:
    headers = {
        "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "Sec-Fetch-Dest": "document",
        "Sec-Fetch-Mode": "navigate",
        "Sec-Fetch-Site": "none",
    }
    if bust:
        headers |= {"Cache-Control": "no-cache", "Pragma": "no-cache"}
    return with_browser_headers(headers, user_agent)


def with_browser_headers(headers: dict[str, str], user_agent: str | None) -> dict[str, str]:
    """``headers`` plus a browser's; the transport replaces them when it impersonates one.
    The client hints are the User-Agent's own, so that both describe one browser."""
    user_agent = user_agent or USER_AGENT
    return {"User-Agent": user_agent, **BROWSER_HEADERS, **client_hints(user_agent), **headers}


# -- one browser: the User-Agent, its client hints and the TLS profile agree --------------

_PRODUCT = re.compile(r"([A-Za-z][A-Za-z0-9_.-]{0,40})/(\d{1,6})((?:\.\d{1,8}){0,4})")
_COMMENT = re.compile(r"\(([^()]{0,400})\)")
_CHROMIUM_TOKENS = {"Mozilla", "AppleWebKit", "Chrome", "Safari", "Edg", "EdgA", "OPR", "Brave"}
_BRANDS = (("Edg", "Microsoft Edge"), ("EdgA", "Microsoft Edge"), ("OPR", "Opera"),
           ("Brave", "Brave"))  # fmt: skip
_GREASE_CHARACTERS = " (:-./);=?_"
_GREASE_VERSIONS = ("8", "99", "24")
_BRAND_ORDERS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


def user_agent_platform(user_agent: str) -> str | None:
    """The platform a User-Agent names, as ``sec-ch-ua-platform`` spells it; None if unsure."""
    comment = " ".join(_COMMENT.findall(user_agent))
    for mark, platform in (("Android", "Android"), ("Windows NT", "Windows"),
                           ("Macintosh", "macOS"), ("CrOS", "Chrome OS"), ("X11", "Linux"),
                           ("Linux", "Linux")):  # fmt: skip
        if mark in comment:
            return platform
    return None


def browser_of(user_agent: str) -> tuple[str, tuple[int, ...], str | None] | None:
    """A User-Agent's browser: ``(family, version, platform)`` with family ``chromium``
    (its Chromium version), ``edge``, ``firefox`` or ``safari``; None when unknown."""
    products = {name: (int(major), rest) for name, major, rest in _PRODUCT.findall(user_agent)}
    platform = user_agent_platform(user_agent)
    ios = any(device in user_agent for device in ("iPhone", "iPad", "iPod"))

    def version(name: str) -> tuple[int, ...]:
        major, rest = products[name]
        return (major, *(int(part) for part in rest.split(".")[1:]))

    if "Firefox" in products and "Gecko" in products and "Chrome" not in products:
        return "firefox", version("Firefox"), platform
    if "Chrome" in products and "Version" not in products:
        return ("edge" if "Edg" in products else "chromium"), version("Chrome"), platform
    if ios and set(products) & {"CriOS", "FxiOS", "EdgiOS"}:  # WebKit, whatever the brand
        found = re.search(r"OS (\d{1,3})_(\d{1,3})", user_agent)
        return "safari", tuple(int(n) for n in found.groups()) if found else (0,), "iOS"
    if (
        "Safari" in products
        and "Version" in products
        and not set(products) & {"Chrome", "CriOS", "FxiOS", "EdgiOS", "OPT"}
    ):
        return "safari", version("Version"), "iOS" if ios else platform
    return None


def client_hints(user_agent: str) -> dict[str, str]:
    """The ``sec-ch-ua*`` headers the browser of ``user_agent`` sends with it, as Chromium
    makes them (brands, GREASE and order from its major version); none for Firefox and
    Safari, which send none, nor for a User-Agent whose brand or platform is unsure."""
    products = {name: major for name, major, _ in _PRODUCT.findall(user_agent)}
    platform = user_agent_platform(user_agent)
    if "Chrome" not in products or platform is None or not set(products) <= _CHROMIUM_TOKENS:
        return {}
    chromium = int(products["Chrome"])
    brand, brand_version = "Google Chrome", chromium
    for token, name in _BRANDS:
        if token in products:
            brand, brand_version = name, int(products[token])
    if chromium < 105:  # before the GREASE brand was permuted
        brands = [(" Not A;Brand", "99"), ("Chromium", str(chromium)), (brand, str(brand_version))]
    else:
        first, second = _GREASE_CHARACTERS[chromium % 11], _GREASE_CHARACTERS[(chromium + 1) % 11]
        grease = (f"Not{first}A{second}Brand", _GREASE_VERSIONS[chromium % 3])
        brands = [grease, grease, grease]
        order = _BRAND_ORDERS[chromium % 6]
        brands[order[1]], brands[order[2]] = (
            ("Chromium", str(chromium)),
            (brand, str(brand_version)),
        )
    return {
        "sec-ch-ua": ", ".join(f'"{name}";v="{version}"' for name, version in brands),
        "sec-ch-ua-mobile": "?1" if re.search(r"\bMobile\b", user_agent) else "?0",
        "sec-ch-ua-platform": f'"{platform}"',
    }


def profile_version(profile: str) -> tuple[str, tuple[int, ...], str] | None:
    """A curl_cffi profile's ``(family, version, flavour)``: ``chrome136`` is ``("chrome",
    (136,), "")``, ``safari18_0_ios`` and ``safari180_ios`` ``("safari", (18, 0), "ios")``."""
    found = re.fullmatch(r"(chrome|edge|firefox|safari)(\d+)((?:_\d+)*)a?(?:_([a-z]+))?", profile)
    if found is None:
        return None
    family, digits, parts, flavour = found.groups()
    if parts:
        version = (int(digits), *(int(part) for part in parts[1:].split("_")))
    elif family == "safari" and len(digits) > 2:
        version = (int(digits[:2]), *(int(digit) for digit in digits[2:]))
    else:
        version = (int(digits),)
    return family, version, flavour or ""


def profile_for_user_agent(user_agent: str, available: Iterable[str]) -> str | None:
    """The curl_cffi profile (of ``available``) closest to the browser of ``user_agent``:
    the same family (Chromium-based browsers play Chrome; Edge plays Edge when one is as
    close), the nearest version, then the platform's flavour (``_android``, ``_macos``,
    ``_ios``, never another platform's), the newer on a tie; None when no profile fits."""
    browser = browser_of(user_agent)
    if browser is None:
        return None
    family, version, platform = browser
    wanted = {"chromium": ("chrome",), "edge": ("edge", "chrome")}.get(family, (family,))
    flavour = {"Android": "android", "macOS": "macos", "iOS": "ios"}.get(platform or "", "")
    candidates = []
    for profile in available:
        known = profile_version(profile)
        if known is None or known[0] not in wanted or known[2] not in ("", flavour):
            continue
        their_family, their_version, their_flavour = known
        distance = abs(version_number(their_version) - version_number(version))
        rank = (distance, wanted.index(their_family), their_flavour != flavour)
        candidates.append((rank, tuple(-n for n in their_version), profile))
    return min(candidates)[2] if candidates else None


def version_number(version: tuple[int, ...]) -> int:
    """``(18, 4)`` as 180400: versions compared by major, then minor, then patch."""
    major, minor, patch = (*version, 0, 0)[:3]
    return major * 10_000 + min(minor, 99) * 100 + min(patch, 99)


def curl_profiles() -> list[str]:
    """The browser profiles the installed curl_cffi plays."""
    from curl_cffi.requests import BrowserType

    return [browser.value for browser in BrowserType]


def curl_headers(headers: dict[str, str]) -> dict[str, str | None]:
    """The headers handed to curl_cffi: with our own User-Agent, the browser profile's
    stand; with the user's, its client hints replace the profile's, and where it has none
    (Firefox, Safari) the profile's are left out (``None``)."""
    if headers.get("User-Agent") == USER_AGENT:
        skip = {"User-Agent", *BROWSER_HEADERS, *CLIENT_HINTS}
        return {name: value for name, value in headers.items() if name not in skip}
    return {**dict.fromkeys(CLIENT_HINTS), **headers}


def post_request(
    box: ChatBox, form: dict[str, str], user_agent: str | None, multipart: bool = False
) -> Request:
    """A POST to the chat box's admin-ajax, as the plugin's JavaScript sends it."""
    headers = {
        "Accept": box.protocol.accept,
        "Origin": origin_of(box.page),
        "Referer": box.page,
        "Sec-Fetch-Dest": "empty",
        "Sec-Fetch-Mode": "cors",
        "Sec-Fetch-Site": "same-origin",
    }
    headers = with_browser_headers(headers, user_agent)
    return Request("POST", box.ajax_url, headers, form, multipart)


def cache_busting(url: str) -> str:
    """``url`` with a query parameter no page cache has seen."""
    parts = urllib.parse.urlsplit(url)
    extra = urllib.parse.urlencode({CACHE_BUSTER: str(time.time_ns())})
    return urllib.parse.urlunsplit(parts._replace(query=f"{parts.query}&{extra}".lstrip("&")))


def decode_text(body: bytes, reply: Reply) -> str:
    """A body as text: its declared charset, else UTF-8; a BOM and bad bytes do no harm."""
    charset = "utf-8"
    found = re.search(r"charset=\"?([\w.:-]{1,40})", reply.headers.get("content-type", ""))
    if found:
        charset = found.group(1)
    try:
        text = body.decode(charset, errors="replace")
    except LookupError:
        text = body.decode("utf-8", errors="replace")
    return text.removeprefix("\ufeff")


# ---------------------------------------------------------------------------------------
# URLs
# ---------------------------------------------------------------------------------------


def split_url(url: str) -> urllib.parse.SplitResult | None:
    """``urlsplit`` that answers None instead of raising (``http://[::1`` raises)."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018  (raises for a bad port)
    except ValueError:
        return None
    return parts


def is_http_url(url: str) -> bool:
    parts = split_url(url)
    return parts is not None and parts.scheme in ("http", "https") and bool(parts.hostname)


def host_of(url: str) -> str:
    """The host (and port) of ``url``, as users know it."""
    parts = split_url(url)
    return parts.netloc.rpartition("@")[2] if parts and parts.netloc else url


def normal_host(host: str) -> str:
    """A host name in one form, for comparing: lower case, and an international name in
    its ASCII (punycode) spelling, as a browser sends it: ``bücher.example`` and
    ``xn--bcher-kva.example`` are one host."""
    host = host.lower()
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return host


def ascii_netloc(parts: urllib.parse.SplitResult) -> str:
    """The host and port of a split URL, without credentials; an international host name
    in its ASCII spelling (unless it has none)."""
    netloc = parts.netloc.rpartition("@")[2]
    if netloc.isascii():
        return netloc
    host = normal_host(parts.hostname or "")
    return host if parts.port is None else f"{host}:{parts.port}"


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, the host in its normal form."""
    parts = split_url(url)
    if parts is None:
        return ""
    return f"{parts.scheme}://{ascii_netloc(parts)}".lower()


def same_site(url: str, other: str) -> bool:
    """Same origin, or the same host moving from http to https."""
    a, b = split_url(url), split_url(other)
    if a is None or b is None:
        return False
    if origin_of(url) == origin_of(other):
        return True
    same_host = normal_host(a.hostname or "") == normal_host(b.hostname or "")
    return same_host and (a.scheme, b.scheme) == ("http", "https")


_CACHE_BUSTING = re.compile(rf"(?:^|&){CACHE_BUSTER}=\d{{10,24}}(?=&|$)")


def same_page(url: str, other: str) -> bool:
    return public_url(url).rstrip("/") == public_url(other).rstrip("/")


def public_url(url: str) -> str:
    """``url`` as a user may see it: without any ``user:password@`` part, nor the query
    parameter that gets past page caches (``?nocache=…``)."""
    parts = split_url(url)
    if parts is None:
        return url
    query = _CACHE_BUSTING.sub("", parts.query).lstrip("&")
    return urllib.parse.urlunsplit(
        parts._replace(netloc=parts.netloc.rpartition("@")[2], query=query)
    )


def safe_urljoin(base: str, url: str) -> str | None:
    try:
        joined = urllib.parse.urljoin(base, url.strip())
    except ValueError:
        return None
    return joined if split_url(joined) is not None else None


def checked_site_url(url: str) -> str:
    """``url`` when it is an http(s) page without credentials, else a ``ValueError``."""
    url = url.strip()
    parts = split_url(url)
    if parts is None or not is_http_url(url):
        raise ValueError("site must be an http:// or https:// URL")
    if "@" in parts.netloc:
        raise ValueError(
            "site must not carry a user name or password: save cookies with "
            "'llm chatgptfree cookies set HOST …' instead"
        )
    netloc = ascii_netloc(parts)  # an international name: the one spelling requests carry
    if not netloc.isascii():
        raise ValueError(f"{parts.hostname!r} is not a valid host name")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, path=parts.path or "/"))


def default_site() -> str:
    """Where the built-in model goes: ``$CHATGPTFREE_SITE`` or chatgptfree.ai."""
    configured = os.environ.get(SITE_ENV, "").strip()
    if configured:
        with contextlib.suppress(ValueError):
            return checked_site_url(configured)
    return DEFAULT_SITE


def is_chatgptfree_ai(url: str) -> bool:
    return (split_url(url).hostname or "") in ("chatgptfree.ai", "www.chatgptfree.ai")


def trusted_origins(site: str) -> frozenset[str]:
    """Origins a prompt may go to: its page's, and every site the user saved."""
    origins = {origin_of(site)}
    with contextlib.suppress(StorageError):
        origins |= {origin_of(saved.url) for saved in SITES_FILE.load().values()}
    return frozenset(origins)


# ---------------------------------------------------------------------------------------
# Sentences: server text made fit to quote
# ---------------------------------------------------------------------------------------

_TAG = re.compile(r"<[^<>]{0,2000}>")
# a terminal's escape sequences (CSI, OSC, DCS/PM/APC/SOS, and the short ones), whole
_ESCAPE = re.compile(
    r"\x1b\[[\x30-\x3f]{0,64}[\x20-\x2f]{0,16}[\x40-\x7e]?"
    r"|\x1b\][^\x07\x1b]{0,4096}(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]{0,4096}(?:\x1b\\)?"
    r"|\x1b[\x20-\x2f]{0,4}[\x30-\x7e]?"
)
# what else moves a terminal's cursor, or reorders the text shown: C0, DEL, C1, bidi marks
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` without escape sequences or control characters (each a space), so that
    what a site says cannot drive the user's terminal."""
    return _CONTROL.sub(" ", _ESCAPE.sub("", text))


def one_line(text: str, limit: int = QUOTE_LIMIT, markup: bool = True) -> str:
    """Server text fit to quote in a one-line error, or to print or store: no tags, no
    newlines, no control characters, bounded. ``markup=False`` keeps tags and entities as
    they are (a URL or a title the site sent as plain text).

    Only the start of ``text`` is looked at, and every pattern is linear in it.
    """
    text = text[: limit * 16]
    if markup:
        text = html.unescape(_TAG.sub(" ", text))
    text = " ".join(printable(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def sentence(text: str) -> str:
    """``text`` ending in one full stop (or the mark it already has)."""
    return text if text[-1:] in (".", "!", "?", "…") else text + "."


def check_prompt_text(message: str) -> None:
    """Refuse a prompt with bytes that are not UTF-8 (llm keeps them as lone surrogates),
    before anything is sent: they are the prompt's, not the site's."""
    bad = re.search(r"[\ud800-\udfff]", message)
    if bad:
        raise ChatgptFreeError(
            f"The prompt holds a byte that is not UTF-8 (0x{ord(bad[0]) & 0xFF:02X}, at "
            f"character {bad.start() + 1}): nothing was sent. Give the prompt as UTF-8 text."
        )


_KEY_WARNED: weakref.WeakSet = weakref.WeakSet()


def warn_unused_key(response: Any) -> None:
    """Say, once per command, that ``--key`` (or ``key=``) is not used: llm passes a key
    only to models that declare ``needs_key``, and drops it silently for the others."""
    context = click.get_current_context(silent=True)
    given = getattr(response, "_key", None) or (context and context.params.get("key"))
    if not given:
        return
    holder = context if context is not None else response
    if holder in _KEY_WARNED:
        return
    _KEY_WARNED.add(holder)
    click.echo(
        "llm-chatgptfree: the key given (--key or key=) is not used: these models need "
        "none (cookies go in 'llm chatgptfree cookies set HOST').",
        err=True,
    )


def site_says(host: str, message: str) -> ChatgptFreeError:
    """The site's own error message, quoted (never a control character)."""
    return ChatgptFreeError(sentence(f"{host} says: {one_line(message, QUOTE_LIMIT * 2)}"))


def summarize_body(body: str) -> str:
    """``: 'what the page says'`` (its first paragraph, its title, or its start), or ``""``."""
    head = body[:65536]
    lowered = head.lower()
    shown = ""
    for opening, closing in (("<p", "</p>"), ("<title", "</title>")):
        start = lowered.find(opening)
        while start != -1 and lowered[start + len(opening) : start + len(opening) + 1] not in (
            ">",
            " ",
        ):
            start = lowered.find(opening, start + 1)
        if start != -1:
            stop = lowered.find(closing, start)
            if stop != -1:
                shown = one_line(head[start:stop], 120)
                break
    shown = shown or one_line(head, 120)
    return f": {shown!r}" if shown else ""


def cloudflare_error(host: str, status: str, news: str = "") -> CloudflareChallenge:
    """The challenge's sentence; ``news``, what became of a stored clearance, is added by
    the exchange that read the cookies (``Exchange.final``)."""
    return CloudflareChallenge(
        f"{host} answered with a Cloudflare challenge ({status}{news}): pass "
        f"it in a browser window with 'llm chatgptfree clearance {host}', or by hand: save "
        f"a browser's Cookie header with 'llm chatgptfree cookies set {host}' and its "
        f"User-Agent in {USER_AGENT_ENV} (and install llm-chatgptfree[browser] to send a "
        "browser's TLS fingerprint).",
        host,
        status,
    )


def status_error(
    reply: Reply, body: str, where: str, protocol: Generation | None = None
) -> ChatgptFreeError:
    """The error for a page, or for an admin-ajax answer of a chat box's ``protocol``, that
    is not what the protocol expects."""
    host = host_of(reply.url)
    status = f"HTTP {reply.status} {reply.reason}".strip()
    if reply.status == 407:
        return ChatgptFreeError(
            f"The proxy refused this client ({status}): check the user name and password "
            f"in -o proxy or ${PROXY_ENV}."
        )
    if is_cloudflare_challenge(reply, body):
        return cloudflare_error(host, status)
    text = body.strip()
    if protocol is not None and text == "0":
        return no_chat_handler(host)
    refusal = protocol.refusal(reply, text, host) if protocol is not None else None
    if refusal is not None:
        return refusal
    if reply.status in TRANSIENT_STATUSES:
        return Retryable(
            f"{where} answered {status} twice: the site is down or overloaded. Try again later."
        )
    if reply.status == 429:
        return ChatgptFreeError(f"{where} is rate limiting this client ({status}). Wait a while.")
    if reply.status == 304:
        return ChatgptFreeError(
            f"{where} answered {status} to a request that had no copy to confirm: a cache "
            "in front of the site is broken. Try again later."
        )
    if 300 <= reply.status < 400:
        return ChatgptFreeError(
            f"{where} answered {status}, a redirect this plugin does not follow."
        )
    summary = summarize_body(text)
    if reply.reason and reply.reason in summary:
        summary = ""  # an error page that only repeats its status
    if reply.status == 200:
        return ChatgptFreeError(
            f"{where} answered something this plugin does not understand{summary}."
        )
    return ChatgptFreeError(f"{where} answered {status}{summary}.")


def no_chat_handler(host: str) -> SiteChanged:
    """admin-ajax answered ``0``: WordPress has no handler for the action sent."""
    return SiteChanged(
        f"{host} has no AI Power chat handler for this chat box (admin-ajax answered '0'): "
        "the plugin is not active there, or runs a release this plugin does not know."
    )


def success_data(reply: Reply, text: str) -> dict[str, Any] | None:
    """The ``data`` of a WordPress ``{"success": true, "data": {…}}`` reply, or None."""
    answer = parse_json(text) if reply.status == 200 else None
    data = answer.get("data") if isinstance(answer, dict) and answer.get("success") else None
    return data if isinstance(data, dict) else None


def json_complete(body: bytes) -> bool:
    """True when ``body`` is one whole JSON object: nothing valid can follow it."""
    return body.rstrip().endswith(b"}") and parse_json(body) is not None


def parse_json(text: str | bytes) -> Any:
    """``json.loads``, or None for anything that is not JSON (too deep counts as not)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


# ---------------------------------------------------------------------------------------
# Reading an answer: bytes in, text out (shared by both generations)
# ---------------------------------------------------------------------------------------


class LineTooLong(Exception):
    pass


class Pieces:
    """Text kept in pieces until it is whole, joined once at the end. Small pieces are
    joined a hundred at a time as they come, so that text fed a byte at a time takes no
    more memory than text fed whole, and no piece is copied more than twice."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0
        self._loose = 0  # how many parts at the end are still single pieces

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)
        self._loose += 1
        if self._loose >= 128:
            self.parts[-128:] = ["".join(self.parts[-128:])]
            self._loose = 0

    def take(self) -> str:
        whole, self.parts, self.size, self._loose = "".join(self.parts), [], 0, 0
        return whole

    def __bool__(self) -> bool:
        return bool(self.parts)


class LineSplitter:
    """Lines of a text stream split anywhere: ``\\n``, ``\\r\\n`` and lone ``\\r`` end a line.

    An unfinished line is kept as pieces and joined once, when it ends, so that a line fed
    byte by byte costs no more than one fed whole; one longer than ``limit`` is refused.
    """

    def __init__(self, limit: int = LINE_LIMIT) -> None:
        self.limit = limit
        self._pieces = Pieces()
        self._after_cr = False

    def split(self, text: str) -> list[str]:
        """The lines that ``text`` completes."""
        if self._after_cr and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF whose CR ended the last piece
        self._after_cr = text.endswith("\r")
        if not text:
            return []
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if "\n" not in text:
            self._keep(text)
            return []
        lines = text.split("\n")
        rest = lines.pop()
        if self._pieces:
            self._pieces.add(lines[0])
            lines[0] = self._pieces.take()
        if rest:
            self._keep(rest)
        return lines

    def rest(self) -> str:
        """The unfinished last line, at the end of the stream."""
        return self._pieces.take()

    def _keep(self, text: str) -> None:
        self._pieces.add(text)
        if self._pieces.size > self.limit:
            raise LineTooLong


class AnswerReader:
    """The bytes of one answer in, its text out; no I/O (h11's way).

    ``feed`` returns the text ready so far and never raises: the failure an answer ends
    with is kept in ``failure`` (and ``ended`` set), so that text that came in the same
    network read is shown before it. ``finish`` is called once the body has ended.

    Both generations stream server-sent events, read here once: lines, fields and events
    (``event`` names, ``data`` lines joined, comments skipped); a generation says only
    what an event means (``event``). The usual network read, one whole ``data:`` frame
    with nothing pending, goes a short way to ``frame`` (a third of the time per delta).
    """

    def __init__(self, host: str) -> None:
        self.host = host
        self.chars = 0  # characters of answer handed out
        self.last = ""  # the last piece handed out
        self.ended = False  # the end marker, or a failure: read no further
        self.failure: ChatgptFreeError | None = None
        self._size = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._lines = LineSplitter()
        self._started = False
        self._event = ""  # the event being read: its name and data lines
        self._data: list[str] = []
        self._data_size = 0

    def feed(self, data: bytes) -> str:
        if self.ended or not data:
            return ""
        self._size += len(data)
        if self._size > ANSWER_LIMIT:
            self.fail(self.broke_off(f"it is over {ANSWER_LIMIT // 2**20} MB"))
            return ""
        if self.is_whole_frame(data):
            piece = self.frame(data)
            if piece is not False:
                return self.shown(piece or "")
        return self.take(self._decoder.decode(data))

    def is_whole_frame(self, data: bytes) -> bool:
        """One ``data:`` line and its blank line, ended by LFs, with nothing half read."""
        return (
            data[:6] == b"data: "
            and data[-2:] == b"\n\n"
            and data.count(b"\n") == 2
            and b"\r" not in data
            and self.streaming()
            and self.between_frames()
        )

    def between_frames(self) -> bool:
        """True when no line, event or character is half read."""
        lines = self._lines
        return (
            self._started
            and not self.ended
            and not self._event
            and not self._data
            and not lines._pieces
            and not lines._after_cr
            and not self._decoder.getstate()[0]
        )

    def streaming(self) -> bool:
        """True once the body is known to be a stream of events."""
        return True

    def frame(self, data: bytes) -> str | None | Literal[False]:
        """The short way: what one whole frame ``data: …\\n\\n`` means; False to take
        the long way (a frame that is not UTF-8)."""
        try:
            payload = data[6:-2].decode()
        except UnicodeDecodeError:
            return False
        return self.event("", payload)

    def finish(self) -> str:
        text = ""
        if not self.ended:
            text = self.take(self._decoder.decode(b"", final=True), final=True)
        if self.failure is None:
            text += self.shown(self.end())
        return text

    def take(self, text: str, final: bool = False) -> str:
        """The answer text in ``text``, the next piece of the body, each piece counted by
        ``shown`` as soon as it is found (a failure later in ``text`` says how much came
        before it)."""
        pieces = []
        for line in self.lines(text, final):
            if self.ended:
                break
            if not line:
                piece = self.dispatch()
                if piece:
                    pieces.append(self.shown(piece))
            elif line[0] != ":":  # a comment: padding, keep-alives
                self.field(line)
        if final and not self.ended:
            piece = self.dispatch()  # an event the body's end cut short of its blank line
            if piece:
                pieces.append(self.shown(piece))
        return "".join(pieces)

    def field(self, line: str) -> None:
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
            self._data_size += len(value)
            if self._data_size > LINE_LIMIT:
                self.fail(self.broke_off(f"an event of it is over {LINE_LIMIT // 2**20} MB"))
        elif name == "event":
            self._event = value
        elif name not in ("id", "retry"):
            self.other_line(line)

    def dispatch(self) -> str | None:
        """The event read so far, ended by a blank line: what it means."""
        name, data = self._event, self._data
        self._event, self._data, self._data_size = "", [], 0
        return self.event(name, "\n".join(data)) if data else None

    def event(self, name: str, data: str) -> str | None:
        """Subclasses: the answer text one event carries, if any."""
        raise NotImplementedError

    def other_line(self, line: str) -> None:
        """A line that is no SSE field; ignored unless a generation keeps it."""

    def end(self) -> str:
        """Subclasses: at the body's end, any last text; a failure if the answer is not whole."""
        raise NotImplementedError

    def lines(self, text: str, final: bool = False) -> list[str]:
        """The lines ``text`` completes (all that is left, when ``final``)."""
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        try:
            lines = self._lines.split(text)
        except LineTooLong:
            self.fail(self.broke_off(f"a line of it is over {LINE_LIMIT // 2**20} MB"))
            return []
        if final:
            lines.append(self._lines.rest())
        return lines

    def shown(self, text: str) -> str:
        if text:
            self.chars += len(text)
            self.last = text
        return text

    def fail(self, error: ChatgptFreeError) -> None:
        if self.failure is None:
            self.failure = error
        self.ended = True

    def broke_off(self, what: str) -> ChatgptFreeError:
        """The error for an answer that went wrong after ``self.chars`` characters."""
        if self.chars:
            return ChatgptFreeError(
                f"The answer from {self.host} broke off after {self.chars:,} characters "
                f"({what}); the text above is incomplete."
            )
        return ChatgptFreeError(sentence(f"No answer from {self.host}: {what}"))


# ---------------------------------------------------------------------------------------
# What a protocol generation knows: the interface the core asks
# ---------------------------------------------------------------------------------------


class Generation:
    """One generation of the chat box's protocol. The core asks it, and never its name:
    a third generation is a third subclass in a section of its own."""

    name = ""
    accept = "*/*"  # the Accept header of its POSTs
    has_bots = False  # every chat box is a bot of its own (a model of its own)

    def chat_box(self, attributes: dict[str, str], page: PageText) -> ChatBox | None:
        """The chat box of one ``<div>`` start tag, if it is one of this generation's."""
        raise NotImplementedError

    def talk(self, exchange: Exchange, box: ChatBox) -> Steps:
        """Send the exchange's message to ``box`` and stream its answer."""
        raise NotImplementedError

    def fresh_nonce(self, visit: Visit, box: ChatBox) -> Generator[Step, Any, ChatBox | None]:
        """``box`` with a fresh nonce asked of the site, or None: read the page again."""
        return None
        yield  # a generator that asks nothing

    def refusal(self, reply: Reply, text: str, host: str) -> ChatgptFreeError | None:
        """What an admin-ajax body that is not an answer says, if this generation knows."""
        return None

    def empty_message(self, box: ChatBox, identity: Identity) -> dict[str, str]:
        """The form of an empty message: the site checks its nonce, then refuses it."""
        raise NotImplementedError

    def nonce_verdict(self, reply: Reply, text: str) -> tuple[str, str]:
        """What the answer to ``empty_message`` says of the nonce: ``accepted``,
        ``rejected`` or ``not checked``, and what the site said."""
        raise NotImplementedError

    def describe(self, box: ChatBox) -> str:
        """One chat box in a few words, for ``probe``."""
        raise NotImplementedError

    def bot_name(self, box: ChatBox) -> str:
        """The chat box as the resolved model names it."""
        if box.bot_id in ("", "0"):
            return "chat box"
        return f"bot {box.bot_id} ({box.label})" if box.label else f"bot {box.bot_id}"


def common_verdict(reply: Reply, text: str) -> tuple[str, str] | None:
    """The nonce verdicts every generation shares: a challenge, or no handler at all."""
    if is_cloudflare_challenge(reply, text):
        return "not checked", f"HTTP {reply.status}, a Cloudflare challenge"
    if text.strip() == "0":
        return "not checked", f"HTTP {reply.status} '0': admin-ajax has no chat action for this box"
    return None


# ---------------------------------------------------------------------------------------
# Generation 1.x: one form, an SSE stream of OpenAI chunks or one JSON object
# ---------------------------------------------------------------------------------------

SHORTCODE_ACTION = "wpaicg_chat_shortcode_message"
WIDGET_ACTION = "wpaicg_chatbox_message"
NONCE_MESSAGES = ("nonce verification failed", "invalid nonce", "security check")
SSE_FIELDS = ("data", "event", ":", "id", "retry")
ERROR_WORD_FRAME = ('{"choices":[{"delta":{"content":"', '"}}]}')


def form_1x(box: ChatBox, message: str, client: str) -> dict[str, str]:
    """The form the plugin's own JavaScript posts.

    ``wpaicg_chat_history`` is sent empty on purpose: the conversation already is in
    ``message``, and the server drops any history containing ``"`` or ``\\``.
    """
    identity_field = f"custom_bot_{box.bot_id}" if box.bot_id not in ("", "0") else box.kind
    return {
        "_wpnonce": box.nonce,
        "post_id": box.post_id,
        "url": box.url,
        "action": WIDGET_ACTION if box.kind == "widget" else SHORTCODE_ACTION,
        "message": message,
        "bot_id": box.bot_id,
        "chatbot_identity": identity_field,
        "wpaicg_chat_client_id": client,
        "wpaicg_chat_history": "[]",
        "chat_id": str(secrets.randbelow(100_000) + 1),
    }


def is_nonce_message(message: str) -> bool:
    lowered = message.lower()
    return any(lowered.startswith(m) for m in NONCE_MESSAGES)


class AnswerReader1(AnswerReader):
    """A 1.x answer: an SSE stream of OpenAI chunks (``choices[0].delta.content`` or legacy
    ``choices[0].text``) up to ``data: [DONE]``, or one JSON object; every release's shapes,
    error words and events included."""

    def __init__(self, host: str) -> None:
        super().__init__(host)
        self.mode: str | None = None  # "sse" or "json"
        self.done = False
        self.finish_reason: str | None = None
        self.upstream_id: str | None = None
        self.model: str | None = None
        self.notice: str | None = None  # a banned-IP or flagged-word event
        self._prefix = ""  # the start of the body while its kind is unknown
        self._body = Pieces()  # a JSON answer, until its end
        self._error_words: list[str] = []  # the plugin spelling out an error, word by word
        self._error_closed = False
        self._tail: list[str] = []  # lines that are not SSE (old releases' final JSON)

    def streaming(self) -> bool:
        return self.mode == "sse"

    def details(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "finish_reason": self.finish_reason,
            "id": self.upstream_id,
            "model": self.model,
            "notice": self.notice,
        }

    def take(self, text: str, final: bool = False) -> str:
        if self.mode is None:
            text = self.sniff(text, final)
            if self.mode is None:
                return ""
        if self.mode == "json":
            self._body.add(text)
            return ""
        return super().take(text, final)

    def sniff(self, text: str, final: bool) -> str:
        """Decide from the first characters whether the body is a stream or JSON."""
        if not self._prefix:
            text = text.removeprefix("\ufeff").lstrip()  # whitespace is dropped, not kept
        seen = self._prefix + text
        if not seen:
            return ""
        if any(seen.startswith(f) for f in SSE_FIELDS):
            self.mode = "sse"
        elif seen[0] in "{[0-<" or final or not any(f.startswith(seen) for f in SSE_FIELDS):
            self.mode = "json"  # JSON, or a plain body that the error will describe
        else:
            self._prefix = seen  # a prefix of "data" or "event": a few characters at most
            return ""
        self._prefix = ""
        return seen

    def other_line(self, line: str) -> None:
        if len(self._tail) < 20:
            self._tail.append(line[:SMALL_BODY_LIMIT])  # the JSON 1.8.79 glues after [DONE]

    def event(self, name: str, payload: str) -> str | None:
        """An OpenAI chunk, ``[DONE]``, ``[LIMITED]``, an error or an event message; named
        ``message``, the plugin spelling out an error word by word."""
        if payload == "[DONE]":
            self.done = self.ended = True
            return None
        if payload == "[LIMITED]":
            self.fail(self.broke_off(f"the site stopped the answer: {self.error_text()}"))
            return None
        chunk = parse_json(payload)
        if chunk is None and name == "message":  # error words, inserted unescaped
            prefix, suffix = ERROR_WORD_FRAME
            if payload.startswith(prefix) and payload.endswith(suffix):
                payload = payload[len(prefix) : -len(suffix)]
            self.error_word(payload)
            return None
        if not isinstance(chunk, dict):
            self.fail(self.broke_off(f"the stream held a broken frame: {one_line(payload, 60)!r}"))
            return None
        if "error" in chunk:
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else error
            self.fail(self.broke_off(f"the site's model failed: {one_line(str(message))}"))
            return None
        if "msg" in chunk and "choices" not in chunk:
            return self.event_message(chunk)
        return self.choice(chunk, spelled_error=name == "message")

    def event_message(self, chunk: dict) -> None:
        message = one_line(str(chunk["msg"]))
        if chunk.get("tokenLimitReached"):
            self.fail(site_says(self.host, message))
        else:
            self.notice = message  # banned IP or flagged words: an answer may still follow
        return None

    def choice(self, chunk: dict, spelled_error: bool) -> str | None:
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return None
        choice = choices[0]
        delta = choice.get("delta")
        content = delta.get("content") if isinstance(delta, dict) else None
        if content is None:
            content = choice.get("text")
        if spelled_error:  # the plugin spelling out an error, word by word
            if isinstance(content, str):
                self.error_word(content)
            return None
        if choice.get("finish_reason"):
            if self._error_words:
                self._error_closed = True  # the end of the error words, not of an answer
            else:
                self.finish_reason = str(choice["finish_reason"])
        if self.upstream_id is None and isinstance(chunk.get("id"), str):
            self.upstream_id = chunk["id"][:200]
        if self.model is None and isinstance(chunk.get("model"), str):
            self.model = chunk["model"][:200]
        return content if isinstance(content, str) and content else None

    def error_word(self, word: str) -> None:
        if not self._error_closed and len(self._error_words) < 4096:  # the words come twice
            self._error_words.append(word[:QUOTE_LIMIT])

    def error_text(self) -> str:
        return one_line("".join(self._error_words)) or "no reason given"

    def end(self) -> str:
        if self.mode == "json":
            return self.json_answer(self._body.take())
        if self.mode is None:
            return self.empty()
        return self.stream_end()

    def empty(self) -> str:
        self.fail(ChatgptFreeError(f"{self.host} sent an empty answer. Try again."))
        return ""

    def stream_end(self) -> str:
        if self._error_words:
            self.fail(self.broke_off(f"the site's model failed: {self.error_text()}"))
            return ""
        tail = parse_json("".join(self._tail))
        tail = tail if isinstance(tail, dict) else {}
        if self.chars == 0 and tail.get("status") == "error":
            self.fail(site_says(self.host, one_line(str(tail.get("msg")))))
        elif self.chars == 0 and self.notice:
            self.fail(site_says(self.host, self.notice))
        elif not (self.done or self.finish_reason):
            self.fail(self.broke_off("the stream ended without a finish signal"))
        elif self.chars == 0:  # 1.8.79 glues the whole answer after the stream too
            data = tail.get("data")
            return data if isinstance(data, str) and data.strip() else self.empty()
        return ""

    def json_answer(self, body: str) -> str:
        answer = parse_json(body)
        if not isinstance(answer, dict):
            self.fail(plain_body_error(self.host, body))
            return ""
        message = one_line(str(answer.get("msg") or ""))
        if answer.get("status") == "success":
            data = answer.get("data")
            return data if isinstance(data, str) and data.strip() else self.empty()
        if is_nonce_message(message):
            self.fail(NonceRejected(message))
        elif message:
            self.fail(site_says(self.host, message))
        else:
            self.fail(plain_body_error(self.host, body))
        return ""


def plain_body_error(host: str, body: str) -> ChatgptFreeError:
    """The error for an admin-ajax body that is neither a stream nor the plugin's JSON."""
    text = body.strip()
    if text == "0":
        return SiteChanged(
            f"{host} has no AI Power chat handler (admin-ajax answered '0'): the chat box "
            "plugin is not active there."
        )
    if text == "-1":
        return NonceRejected("admin-ajax answered '-1'")
    if text.startswith("<") or "<title" in text[:4096].lower():
        return ChatgptFreeError(
            f"{host} sent a web page instead of an answer{summarize_body(text)}."
        )
    return ChatgptFreeError(
        f"{host} sent an answer this plugin does not understand: {one_line(text, 120)!r}."
    )


def ajax_url_1x(page: str, page_url: str) -> str:
    """``wpaicgParams.ajax_url`` when the page has it on its own origin, else the page
    origin's ``admin-ajax.php``: another plugin's parameters never choose the endpoint."""
    default = origin_of(page_url) + "/wp-admin/admin-ajax.php"
    found = _WPAICG_AJAX_URL.search(page)
    if found is None:
        return default
    url = parse_json(found.group(1))
    # relative and protocol-relative URLs are resolved against the page, as a browser does
    url = safe_urljoin(page_url, url) if isinstance(url, str) and url.strip() else None
    if url is not None and is_http_url(url) and origin_of(url) == origin_of(page_url):
        return url
    return default


class Generation1(Generation):
    """1.x (wpaicg): one form to admin-ajax, answered by a stream or one JSON object."""

    name = "1.x"
    accept = "text/event-stream, application/json, */*"

    def chat_box(self, attributes: dict[str, str], page: PageText) -> ChatBox | None:
        """A box: ``data-nonce`` (or ``wpaicgParams.search_nonce``), post, bot and url."""
        classes = attributes.get("class", "").split()
        if "data-config" in attributes or not any(c in classes for c in BOX_CLASSES_1X):
            return None
        kind = attributes.get("data-type", "").strip()
        if kind not in ("shortcode", "widget"):
            kind = "widget" if "wpaicg-chatbox" in classes else "shortcode"
        nonce = attributes.get("data-nonce", "").strip()
        if not nonce:
            found = _SEARCH_NONCE.search(page.text)
            nonce = found.group(1) if found else ""
        if not nonce:
            return None
        return ChatBox(
            generation=self.name,
            page=public_url(page.url),
            ajax_url=ajax_url_1x(page.text, page.url),
            nonce=nonce,
            post_id=attributes.get("data-post-id", "").strip(),
            bot_id=attributes.get("data-bot-id", "").strip() or "0",
            kind=kind,
            url=attributes.get("data-url", "").strip() or public_url(page.url).rstrip("/"),
            release=page.release,
        )

    def talk(self, exchange: Exchange, box: ChatBox) -> Steps:
        """POST the conversation to ``wpaicg_chat_shortcode_message``; stream the answer."""
        if exchange.images:
            raise ChatgptFreeError(
                f"The 1.x chat box of {exchange.host} takes no images: nothing was sent."
            )
        form = form_1x(box, exchange.message or "", exchange.identity.client_id)
        where = f"{exchange.host}'s admin-ajax"
        reply = yield from exchange.post(box, form, where)
        if reply.status != 200:
            body = yield from exchange.read_body(SMALL_BODY_LIMIT, where)
            raise status_error(reply, decode_text(body, reply), where, self)
        reader = AnswerReader1(exchange.host)
        cut = False
        try:
            yield from exchange.stream(reader, where)
        finally:
            cut = reader.finish_reason == "length"  # the model's output token limit
            stopped = {"stopped": "max_tokens"} if cut else {}
            exchange.record(box, reader.details() | stopped, reader.model)
        if reader.failure:
            raise reader.failure
        if cut:
            exchange.notes.append(token_limit_note(exchange.host, []))

    def refusal(self, reply: Reply, text: str, host: str) -> ChatgptFreeError | None:
        expired = "link you followed has expired" in text[:4096].lower() or text == "-1"
        if reply.status == 403 and expired:
            return NonceRejected(f"HTTP {reply.status} {reply.reason}".strip())
        return None

    def empty_message(self, box: ChatBox, identity: Identity) -> dict[str, str]:
        return form_1x(box, "", identity.client_id)

    def nonce_verdict(self, reply: Reply, text: str) -> tuple[str, str]:
        status = f"HTTP {reply.status}"
        shared = common_verdict(reply, text)
        if shared is not None:
            return shared
        text = text.strip()
        answer = parse_json(text) if text.startswith("{") else None
        message = str(answer.get("msg", "")) if isinstance(answer, dict) else text
        if "nothing was inputted" in message:
            return "accepted", ""
        if reply.status == 403 or is_nonce_message(message) or text == "-1":
            return "rejected", f"{status} {one_line(message, 80)!r}"
        if reply.status != 200:
            return "not checked", f"{status} {one_line(text, 120)!r}"
        return "accepted", one_line(message, 120) or "(nothing)"

    def describe(self, box: ChatBox) -> str:
        bot = f", bot {box.bot_id}" if box.bot_id != "0" else ""
        return f"1.x {box.kind} chat box, post {box.post_id or '?'}{bot}"


# ---------------------------------------------------------------------------------------
# Generation 2.x: cache the message, then stream it (AIPKit, from 2.3)
# ---------------------------------------------------------------------------------------

DELTA_FRAME = (b'data: {"delta":"', b'"}\n\n')  # the usual frame: one per network read
CACHE_ACTION_2X = "aipkit_cache_sse_message"
STREAM_ACTION_2X = "aipkit_frontend_chat_stream"
NONCE_ACTION_2X = "aipkit_get_frontend_chat_nonce"
HISTORY_ACTION_2X = "aipkit_get_conversation_history"
CACHE_KEY = re.compile(r"aipkit_sse_[A-Za-z0-9]{1,64}")
NONCE = re.compile(r"[0-9a-f]{10}")
KEY_LOST_TEXTS = (
    "Message not found in cache.",
    "Cached message has expired.",
    "Message cache key is missing.",
)
TRANSIENT_WORDS = (
    "rate limit",
    "server_error",
    "connection error",
    "timed out",
    "overloaded",
    "(error:",
    "try again",
)


IMAGE_REFUSALS = {  # the cache step's image validator: what to do about each refusal
    "invalid_image_type": "Send a JPEG, PNG or WebP image.",
    "invalid_image_payload": "The image data did not pass its check: send the image again.",
    "too_many_images": f"Send {MAX_IMAGES} images at most.",
    "image_too_large": "Send a smaller image.",
}
RATE_LIMIT_WORDS = (  # every model API's words for "too many requests now" (captures 17-22)
    "rate limit",  # OpenAI, DeepSeek, Anthropic ("exceed the rate limit")
    "rate_limit",  # Anthropic's and DeepSeek's error types
    "exceeded your current quota",  # Google
    "resource_exhausted",  # Google's status
    "temporarily at capacity",  # xAI
    "(code: 429)",  # OpenRouter
    "too many requests",
)
BAD_KEY_WORDS = (  # every model API's words for the site's own API key (captures 11-16)
    "invalid_api_key",  # OpenAI
    "incorrect api key",  # OpenAI, xAI
    "api key not valid",  # Google
    "authentication_error",  # Anthropic, DeepSeek
    "invalid x-api-key",  # Anthropic
    "authentication fails",  # DeepSeek
    "(code: 401)",  # OpenRouter
)
TOKEN_LIMIT_WORDS = (  # every wording of an answer cut at the output token limit
    "max_output_tokens",  # OpenAI, xAI, OpenRouter: " (Incomplete: max_output_tokens)"
    "maximum output token limit",  # Anthropic: "Claude stopped because the maximum …"
    "max_tokens",
)
SEARCH_STATUSES = ("response.web_search_call.searching", "google_search_call")
SOURCE_LIMIT = 50  # sources kept of one answer


class BotGone(ChatgptFreeError):
    """2.x: the site has no such bot any more."""


def cache_form(box: ChatBox, message: str) -> dict[str, str]:
    """Step 1, as the chat box's JavaScript posts it."""
    if message.strip() == "0":
        message += "\n"  # PHP's empty() takes "0" for nothing; the site trims the newline
    stamp = f"{int(time.time() * 1000)}-{secrets.token_hex(3)[:5]}"
    return {
        "action": CACHE_ACTION_2X,
        "message": message,
        "_ajax_nonce": box.nonce,
        "bot_id": box.bot_id,
        "user_client_message_id": f"aipkit-client-msg-{box.bot_id}-{stamp}",
    }


def stream_request(
    box: ChatBox,
    key: str,
    session: str,
    conversation: str,
    user_agent: str | None,
    search: dict[str, str] | None = None,
) -> Request:
    """Step 2: the ``EventSource`` GET, its query in the browser's order (the globe
    toggle's ``frontend_*_active=true`` before the nonce)."""
    query = {
        "action": STREAM_ACTION_2X,
        "cache_key": key,
        "bot_id": box.bot_id,
        "session_id": session,
        "conversation_uuid": conversation,
    }
    if box.post_id not in ("", "0"):
        query["post_id"] = box.post_id
    query |= {"_ts": str(int(time.time() * 1000)), **(search or {}), "_ajax_nonce": box.nonce}
    separator = "&" if "?" in box.ajax_url else "?"
    url = box.ajax_url + separator + urllib.parse.urlencode(query)
    headers = {
        "Accept": "text/event-stream",
        "Cache-Control": "no-cache",
        "Referer": box.page,
        "Sec-Fetch-Dest": "empty",
        "Sec-Fetch-Mode": "cors",
        "Sec-Fetch-Site": "same-origin",
    }
    return Request("GET", url, with_browser_headers(headers, user_agent))


def history_form(box: ChatBox, session: str, conversation: str) -> dict[str, str]:
    return {
        "action": HISTORY_ACTION_2X,
        "_ajax_nonce": box.nonce,
        "bot_id": box.bot_id,
        "session_id": session,
        "conversation_uuid": conversation,
    }


def cache_key_of(reply: Reply, body: str, where: str) -> str:
    """The key step 1 answered, or the error it answered instead."""
    key = (success_data(reply, body) or {}).get("cache_key")
    if isinstance(key, str) and CACHE_KEY.fullmatch(key):
        return key
    raise status_error(reply, body, where, GENERATION_2X)


def error_of_json_2x(host: str, reply: Reply, text: str) -> ChatgptFreeError | None:
    """What a ``{"success":false,"data":{"message":…,"code":…}}`` body means, if it is one."""
    answer = parse_json(text) if text.startswith("{") else None
    if not isinstance(answer, dict) or answer.get("success") is not False:
        return None
    data = answer.get("data")
    message = one_line(str(data.get("message") or "")) if isinstance(data, dict) else ""
    code = str(data.get("code") or "") if isinstance(data, dict) else ""
    if code.startswith("nonce_failure") or (reply.status == 403 and "nonce" in message.lower()):
        return NonceRejected(message or code)
    if code in ("cors_denied", "embed_not_available"):
        return ChatgptFreeError(sentence(f"{host} refuses this client: {message or code}"))
    if code == "empty_data_to_cache":
        return ChatgptFreeError(sentence(f"{host} refused the message as empty: {message}"))
    if code in IMAGE_REFUSALS:
        return ChatgptFreeError(
            f"{host} refused the message's images: {sentence(message or code)} "
            f"{IMAGE_REFUSALS[code]}"
        )
    if reply.status in (500, 503) and message:
        return Retryable(f"{host} says: {sentence(message)} Try again later.")
    if message:
        return site_says(host, message)
    return None


def nonce_of_refresh(reply: Reply, text: str) -> str | None:
    """The nonce ``aipkit_get_frontend_chat_nonce`` answered; None if it did not."""
    if is_cloudflare_challenge(reply, text):
        raise cloudflare_error(host_of(reply.url), f"HTTP {reply.status} {reply.reason}")
    nonce = (success_data(reply, text) or {}).get("nonce")
    return nonce if isinstance(nonce, str) and NONCE.fullmatch(nonce) else None


def usage_of_history(reply: Reply, body: str) -> tuple[str, dict[str, int]] | None:
    """The upstream model and token usage of the last reply in a conversation's history."""
    history = (success_data(reply, body) or {}).get("history")
    if not isinstance(history, list):
        return None
    for entry in reversed(history):
        if isinstance(entry, dict) and entry.get("role") in ("bot", "assistant"):
            model, usage = entry.get("model"), entry.get("usage")
            if not isinstance(model, str) or not isinstance(usage, dict):
                return None
            counts = {
                "input": usage.get("input_tokens", usage.get("prompt_tokens")),
                "output": usage.get("output_tokens", usage.get("completion_tokens")),
            }
            if not all(isinstance(n, int) and n >= 0 for n in counts.values()):
                return None
            return one_line(model, 120), counts
    return None


def delta_of_frame(frame: bytes) -> str | None:
    """The text of one whole ``data: {"delta":"…"}\\n\\n`` frame, by the JSON string
    scanner alone; None for anything else (the full parser then decides)."""
    try:
        text = frame.decode()
        delta, end = scan_json_string(text, 16)
    except (UnicodeDecodeError, ValueError):
        return None
    return delta if text[end:] == "}\n\n" else None


scan_json_string = json.decoder.scanstring  # C-accelerated, as json.loads uses it
_CHIP = re.compile(r"<a\b[^<>]{0,2000}>([^<]{0,400})</a>", re.IGNORECASE)


def sources_text(sources: Iterable[dict[str, str]]) -> str:
    """The sources after an answer, as the chat box lists them: numbered, title and URL."""
    lines = [
        f"{number}. {source['title']} - {source['url']}" if source["title"] else
        f"{number}. {source['url']}"
        for number, source in enumerate(sources, 1)
    ]  # fmt: skip
    return "\n\nSources:\n" + "\n".join(lines) if lines else ""


class AnswerReader2(AnswerReader):
    """A 2.x answer: server-sent events (comments, padding, ``message_start``, ``delta``
    frames, ``status``, ``warning``, ``citations``, ``done``, ``error``; others ignored)."""

    def __init__(
        self, host: str, box: ChatBox, notify: Callable[[str], None] | None = None
    ) -> None:
        super().__init__(host)
        self.box = box
        self.notify = notify  # progress notes ("Searching the web…"), where they are shown
        self.started = False  # message_start seen: the model was called
        self.done = False
        self.message_id: str | None = None
        self.response_id: str | None = None
        self.model: str | None = None  # the upstream model, where the stream names it
        self.warnings: list[str] = []
        self.stopped: str | None = None  # "max_tokens": cut at the output token limit
        self.searched = False
        self.sources: dict[str, dict[str, str]] = {}  # by URL, in the order first cited
        self.suggestions: list[str] = []  # Google Search suggestions (grounding_metadata)

    def frame(self, data: bytes) -> str | None | Literal[False]:
        """A ``{"delta":"…"}`` frame by the JSON string scanner alone; others parsed."""
        if data[:16] == DELTA_FRAME[0]:
            delta = delta_of_frame(data)
            if delta is not None:
                return delta
        return super().frame(data)

    def details(self) -> dict[str, Any]:
        if self.done:
            ended = "done"
        elif self.failure is not None:
            ended = "error"
        else:
            ended = "cut"
        return {
            "mode": "stream",
            "ended": ended,
            "message_id": self.message_id,
            "response_id": self.response_id,
            "upstream_model": self.model,
            "stopped": self.stopped,
            "warnings": self.warnings,
            "searched": self.searched or None,
            "sources": list(self.sources.values()),
            "search_suggestions": self.suggestions,
        }

    @property
    def citations(self) -> list[str]:
        """The URLs of the answer's sources, each once, in the order first cited."""
        return list(self.sources)

    def event(self, name: str, data: str) -> str | None:
        payload = parse_json(data)
        if name in ("", "message"):
            delta = payload.get("delta") if isinstance(payload, dict) else None
            if isinstance(delta, str):
                return delta or None
            if payload is None:
                self.fail(self.broke_off(f"the stream held a broken frame: {one_line(data, 60)!r}"))
            return None
        if name == "citations":
            self.cite(payload)
            return None
        if not isinstance(payload, dict):
            payload = {}
        if name == "message_start":
            self.started = True
            self.message_id = str(payload.get("message_id") or "")[:120] or None
        elif name == "status":
            self.status(payload)
        elif name == "openai_response_id" and isinstance(payload.get("id"), str):
            self.response_id = payload["id"][:120]
        elif name == "warning" and len(self.warnings) < 20:
            warning = one_line(str(payload.get("error", "")).strip(" ()"), 200)
            self.warnings.append(warning)
            if any(word in warning.lower() for word in TOKEN_LIMIT_WORDS):
                self.stopped = "max_tokens"
        elif name == "grounding_metadata":
            self.ground(payload)
        elif name == "done":
            self.done = self.ended = True
            self.cite(payload.get("citations"))  # every entry again: the new ones count
            self.ground(payload.get("grounding_metadata"))
        elif name == "error":
            self.fail(self.stream_error(one_line(str(payload.get("error") or "")), payload))
        return None

    def status(self, payload: dict) -> None:
        """A ``status`` event: ids, the model's name, a search or the token-limit end."""
        kind = str(payload.get("type") or "")
        if isinstance(payload.get("response_id"), str):
            self.response_id = payload["response_id"][:120]  # OpenAI resp_…, xAI a UUID
        if kind == "message_start" and isinstance(payload.get("model"), str):
            self.model = one_line(payload["model"], 120) or None  # Anthropic's snapshot
        searching = kind in SEARCH_STATUSES or (
            kind == "content_block_start" and payload.get("content_block_type") == "server_tool_use"
        )
        if searching and not self.searched:
            self.searched = True
            if self.notify is not None:
                with contextlib.suppress(Exception):
                    self.notify("Searching the web…")
        if kind == "response.incomplete" or payload.get("stop_reason") == "max_tokens":
            self.stopped = "max_tokens"

    def cite(self, items: Any) -> None:
        """Each source once, by URL, in the order first cited, whatever the API's shape
        (``char_location``, ``url_citation``, ``web_search_result_location``, xAI's
        ``{url, title, snippet}``); a later entry fills in what an earlier one lacked."""
        for item in items[:500] if isinstance(items, list) else []:
            url = item.get("url") if isinstance(item, dict) else None
            if not (isinstance(url, str) and is_http_url(url.strip())):
                continue
            url = one_line(url.strip(), 2000, markup=False)
            title = str(item.get("title") or item.get("source_title") or "")
            title = one_line(title, 300, markup=False)
            quote = item.get("cited_text") or item.get("snippet") or ""
            quote = one_line(str(quote), 1000, markup=False)
            known = self.sources.get(url)
            if known is None and len(self.sources) < SOURCE_LIMIT:
                self.sources[url] = {"title": title, "url": url} | (
                    {"cited_text": quote} if quote else {}
                )
            elif known is not None:
                if title and not known["title"]:
                    known["title"] = title
                if quote and "cited_text" not in known:
                    known["cited_text"] = quote

    def ground(self, metadata: Any) -> None:
        """Google's ``grounding_metadata``: the search suggestions of its rendered chip."""
        entry = metadata.get("searchEntryPoint") if isinstance(metadata, dict) else None
        rendered = entry.get("renderedContent") if isinstance(entry, dict) else None
        if not isinstance(rendered, str) or self.suggestions:
            return
        for found in _CHIP.finditer(rendered[:65536]):
            text = one_line(found.group(1), 200)
            if text and text not in self.suggestions and len(self.suggestions) < 10:
                self.suggestions.append(text)

    def end(self) -> str:
        if self.done and not self.chars:
            bot = GENERATION_2X.bot_name(self.box)
            self.fail(ChatgptFreeError(f"{self.host}'s {bot} sent an empty answer. Try again."))
        elif self.chars and not self.done:
            self.fail(self.broke_off("the stream ended without its done event"))
        elif self.started and not self.done:
            self.fail(Retryable(f"No answer from {self.host}: the stream ended before any text."))
        elif not self.done:
            self.fail(Retryable(f"{self.host} closed the answer stream before it began."))
        return ""

    def stream_error(self, text: str, payload: dict) -> ChatgptFreeError:
        """What an ``error`` event means: a refusal before the model was called, or the
        model's failure after ``message_start``."""
        host, bot = self.host, GENERATION_2X.bot_name(self.box)
        lowered = text.lower()
        if self.started:
            what = f"the model behind {bot} failed: {text or 'no reason given'}"
            if self.chars:
                return self.broke_off(what)
            if any(word in lowered for word in RATE_LIMIT_WORDS):
                return Retryable(
                    sentence(f"No answer from {host}: {what}")
                    + " The model's provider is busy or limits the site: try again later."
                )
            if any(word in lowered for word in TRANSIENT_WORDS):
                return Retryable(sentence(f"No answer from {host}: {what}") + " Try again later.")
            if any(word in lowered for word in BAD_KEY_WORDS):
                return ChatgptFreeError(
                    sentence(f"No answer from {host}: {what}")
                    + " The model's provider refused the site's own API key: that is for the "
                    "site's owner to fix, not you; try another bot."
                )
            return ChatgptFreeError(sentence(f"No answer from {host}: {what}"))
        if lowered.startswith("security check failed") or "nonce" in lowered:
            return NonceRejected(text)
        if text in KEY_LOST_TEXTS:
            return KeyLost(text)
        if text == "Invalid chatbot specified.":
            return BotGone(
                f"{host} has no {bot} any more (it says: {text}): run 'llm chatgptfree "
                "refresh' to read its current bots."
            )
        if "quota_notice" in payload or "quota" in lowered or "access disabled" in lowered:
            return ChatgptFreeError(
                f"{host} says: {sentence(text)} That is the site's limit for {bot}: try "
                "another bot, or try again later."
            )
        if "ip address has been blocked" in lowered:
            return ChatgptFreeError(
                f"{host} says: {sentence(text)} Try from another network, or through a proxy "
                "(-o proxy)."
            )
        if "prohibited words" in lowered or "flagged" in lowered:
            return ChatgptFreeError(f"{host} says: {sentence(text)} Rephrase the prompt.")
        if lowered.startswith("api key missing"):
            return ChatgptFreeError(f"{host}'s {bot} is not set up ({text}): try another bot.")
        if "not permitted to access" in lowered:
            return ChatgptFreeError(sentence(f"{host} refuses this client for {bot}: {text}"))
        return site_says(host, text or "the answer failed, without a reason")


def image_inputs(exchange: Exchange, box: ChatBox) -> Generator[Step, Any, list[dict[str, str]]]:
    """``image_inputs`` of this message, as the chat box uploads them; every image read
    (a URL fetched within bounds) and checked before anything is sent."""
    if not exchange.images:
        return []
    bot = GENERATION_2X.bot_name(box)
    if box.image_upload is False:
        raise ChatgptFreeError(
            f"{bot} of {exchange.host} has no image upload on its chat box (any more): "
            "nothing was sent. Run 'llm chatgptfree refresh' to update its bots."
        )
    if exchange.uploads is None:
        allowed = upload_types(box.provider)
        inputs, total = [], 0
        for attachment in exchange.images:
            data = yield from exchange.image_bytes(attachment)
            kind = image_kind(data)
            name = one_line(str(attachment.path or attachment.url or "an image"), 80)
            if kind not in allowed:
                raise AttachmentRefused(
                    f"{bot} takes {type_names(allowed)} images only, and {name} is "
                    f"{'a ' + type_names([kind]) + ' image' if kind else 'not one'}: "
                    "nothing was sent."
                )
            total += len(data)
            inputs.append({"mime_type": kind, "base64_data": base64.b64encode(data).decode()})
        refusal = post_size_refusal(total, len((exchange.message or "").encode()))
        if refusal is not None:
            raise AttachmentRefused(refusal)
        exchange.uploads = inputs
    return exchange.uploads


def token_limit_note(host: str, warnings: list[str]) -> str:
    """The one line after an answer cut at the model's output token limit."""
    said = next((w for w in warnings if any(t in w.lower() for t in TOKEN_LIMIT_WORDS)), "")
    quoted = f" ({host} says: {said.rstrip('.')})" if said else ""
    return f"The answer stopped at the model's output token limit{quoted}: it is incomplete."


def search_query(exchange: Exchange, box: ChatBox) -> dict[str, str]:
    """The globe toggle on the stream GET: as ``-o web_search`` says, else as the bot's
    page sets it (``webToggleDefaultOn``); a search the bot does not allow is refused."""
    wanted = box.search_default if exchange.web_search is None else exchange.web_search
    if not wanted:
        return {}
    google = box.provider.lower() == "google"
    if google and box.google_grounding is not False:
        return {"frontend_google_search_grounding_active": "true"}
    if not google and box.web_search is not False and box.provider.lower() != "deepseek":
        return {"frontend_web_search_active": "true"}
    if exchange.web_search is None:
        return {}  # the page's default, for a bot that cannot search: nothing to ask
    raise ChatgptFreeError(
        f"{GENERATION_2X.bot_name(box)} of {exchange.host} has no web search (its chat box "
        "has no globe toggle): nothing was sent. Leave out -o web_search, or ask a bot "
        "that searches."
    )


class Generation2(Generation):
    """2.x (AIPKit, from 2.3): the message is cached, then its answer streamed."""

    name = "2.x"
    has_bots = True

    def chat_box(self, attributes: dict[str, str], page: PageText) -> ChatBox | None:
        """The ``data-config`` JSON of an inline container or a popup wrapper."""
        config = parse_json(attributes["data-config"]) if "data-config" in attributes else None
        if not isinstance(config, dict):
            return None
        bot_id = str(attributes.get("data-bot-id") or config.get("botId") or "").strip()
        nonce, ajax_url = config.get("nonce"), config.get("ajaxUrl")
        if not (
            bot_id.isdigit() and isinstance(nonce, str) and nonce and isinstance(ajax_url, str)
        ):
            return None
        ajax_url = safe_urljoin(page.url, ajax_url) or ""
        if not is_http_url(ajax_url):
            return None
        classes = attributes.get("class", "").split()
        refreshable = "aipkit_getChatNonceAction" in page.text
        return ChatBox(
            generation=self.name,
            page=public_url(page.url),
            ajax_url=ajax_url,
            nonce=nonce.strip(),
            post_id=str(config.get("postId") or "0"),
            bot_id=bot_id,
            label=one_line(str(config.get("headerName") or ""), 80),
            provider=one_line(str(config.get("provider") or ""), 40),
            kind="popup" if "aipkit_popup_wrapper" in classes else "inline",
            release=page.release,
            can_refresh_nonce=refreshable or release_at_least(page.release, (2, 3, 41)),
            image_upload=config.get("imageUploadEnabledUI") is True,
            web_search=config.get("allowWebSearchTool") is True,
            google_grounding=config.get("allowGoogleSearchGrounding") is True,
            search_default=config.get("webToggleDefaultOn") is True,
        )

    def talk(self, exchange: Exchange, box: ChatBox) -> Steps:
        """Cache the message, open its stream, read the answer; ask for usage if wanted."""
        where = f"{exchange.host}'s admin-ajax"
        search = search_query(exchange, box)
        images = yield from image_inputs(exchange, box)
        form = cache_form(box, exchange.message or "")
        if images:
            form["image_inputs"] = json.dumps(images, separators=(",", ":"))
        reply, text = yield from exchange.post_for_json(box, form, where, multipart=bool(images))
        if images and text.strip() == "0":
            raise ChatgptFreeError(
                f"{exchange.host} dropped the message with its images (admin-ajax answered "
                f"'0'): at {megabytes(len(form['image_inputs']))} it is larger than the "
                "site's PHP takes (post_max_size). Send smaller images."
            )
        key = cache_key_of(reply, text, where)
        conversation = str(uuid.uuid4())  # a fresh one: the whole transcript is the message
        session = exchange.identity.session_id
        request = stream_request(box, key, session, conversation, exchange.user_agent, search)
        reply = yield from exchange.request(request, where)
        if reply.status != 200 or "event-stream" not in reply.headers.get("content-type", ""):
            body = yield from exchange.read_body(SMALL_BODY_LIMIT, where)
            raise status_error(reply, decode_text(body, reply), where, self)
        reader = AnswerReader2(exchange.host, box, exchange.notify)
        details: dict[str, Any] = {"web_search": True} if search else {}
        try:
            yield from exchange.stream(reader, where)
            if exchange.want_usage and reader.done:
                details |= yield from self.ask_usage(exchange, box, conversation)
        finally:
            upstream = details.get("upstream_model") or reader.model
            exchange.record(box, reader.details() | details, upstream)
        if isinstance(reader.failure, BotGone):
            yield from exchange.forget_page()
        if reader.failure:
            raise reader.failure
        if reader.stopped:
            exchange.notes.append(token_limit_note(exchange.host, reader.warnings))
        elif reader.warnings:
            exchange.notes += [f"{exchange.host} says: {sentence(w)}" for w in reader.warnings]
        if reader.sources:
            yield Sources(sources_text(reader.sources.values()))

    def ask_usage(self, exchange: Exchange, box: ChatBox, conversation: str) -> Steps:
        """``aipkit_get_conversation_history``: the upstream model and its usage, if told."""
        exchange.deadline = time.monotonic() + exchange.timeout
        form = history_form(box, exchange.identity.session_id, conversation)
        try:
            reply, text = yield from exchange.post_for_json(box, form, exchange.host)
        except ChatgptFreeError:
            return {"usage": "unavailable"}
        found = usage_of_history(reply, text)
        if found is None:
            return {"usage": "unavailable"}
        model, usage = found
        exchange.response.set_usage(input=usage.get("input"), output=usage.get("output"))
        return {"upstream_model": model, "usage": usage}

    def fresh_nonce(self, visit: Visit, box: ChatBox) -> Generator[Step, Any, ChatBox | None]:
        """2.3.41+: a fresh nonce from ``aipkit_get_frontend_chat_nonce``."""
        if not box.can_refresh_nonce:
            return None
        form = {"action": NONCE_ACTION_2X, "bot_id": box.bot_id}
        reply, text = yield from visit.post_for_json(box, form, visit.host)
        nonce = nonce_of_refresh(reply, text)
        return None if nonce is None else replace(box, nonce=nonce, fetched_at=time.time())

    def refusal(self, reply: Reply, text: str, host: str) -> ChatgptFreeError | None:
        return error_of_json_2x(host, reply, text)

    def empty_message(self, box: ChatBox, identity: Identity) -> dict[str, str]:
        return cache_form(box, "")

    def nonce_verdict(self, reply: Reply, text: str) -> tuple[str, str]:
        status = f"HTTP {reply.status}"
        shared = common_verdict(reply, text)
        if shared is not None:
            return shared
        answer = parse_json(text.strip()) if text.strip().startswith("{") else None
        data = answer.get("data") if isinstance(answer, dict) else None
        data = data if isinstance(data, dict) else {}
        code, message = str(data.get("code") or ""), one_line(str(data.get("message") or ""), 120)
        if code == "empty_data_to_cache":
            return "accepted", ""
        if code.startswith("nonce_failure"):
            return "rejected", f"{status} {message!r}"
        return "not checked", f"{status} {one_line(text, 120)!r}"

    def describe(self, box: ChatBox) -> str:
        label = f"{box.label!r}" if box.label else "(no name)"
        via = f" ({box.provider})" if box.provider else ""
        return f"{label}{via}, {box.kind}, post {box.post_id}"


GENERATION_1X, GENERATION_2X = Generation1(), Generation2()
GENERATIONS: dict[str, Generation] = {g.name: g for g in (GENERATION_1X, GENERATION_2X)}


# ---------------------------------------------------------------------------------------
# The transport: the only code that touches the network
# ---------------------------------------------------------------------------------------
#
# Written once, for asyncio. An async prompt runs the driver (``drive``) on its own event
# loop; a blocking prompt runs the same driver on one background loop of the process
# (``run_blocking``). So there is one way to send a request, to read a body and to bound
# every wait (``asyncio.timeout_at`` on the step's deadline), and one pool of connections
# per process and per event loop. HTTP/1.1 is h11's (sans-I/O) on asyncio's own streams,
# pooled here; with the [browser] extra, curl_cffi speaks HTTP with a real browser's TLS.
#
# Why not httpcore2's async pool, which httpx2 runs on: its locks and events are anyio's,
# so a process's first prompt imported anyio's asyncio backend (2.6 MB traced: a first
# prompt's peak memory 1.22 × a bare client's) and paid httpcore2's layers per chunk. A
# pool used by one loop needs no lock, so it is written here on h11, which httpcore2 itself
# runs on, httpcore2's way: connections kept per origin for 5 s; through a proxy,
# absolute-form requests for http://, CONNECT tunnels for https://, socksio's SOCKS5. It
# costs about 120 lines more than the glue to httpcore2 did; the suite's proxy, TLS, fault
# and hostile-site tests run through it, and it leaves anyio unimported (peak 0.65 ×).


class TransportProblem(Exception):
    """A failure on the way to the site, as a transport hands it to the core."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def phrase(self, timeout: float) -> str:
        """The problem in a few words, for "the answer broke off (…)"."""
        return self.detail


class CannotConnect(TransportProblem):
    def __init__(self, detail: str, proxy: str | None = None) -> None:
        super().__init__(detail)
        self.proxy = proxy  # the proxy's host, when the connection was to a proxy


class TimedOut(TransportProblem):
    def phrase(self, timeout: float) -> str:
        return f"no data for {timeout:g} s"


class Dropped(TransportProblem):
    """The connection was closed or reset, or the reply was not valid HTTP."""


class ProxyFailed(TransportProblem):
    pass


class TooLarge(TransportProblem):
    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit // 2**20} MB")
        self.limit = limit


class RequestFailed(TransportProblem):
    """The request could not be sent as it is (a header value that cannot be encoded…)."""


_PROXIES: dict[str, str] = {}  # a proxy URL as logged (password ***) -> the URL as typed
PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")


def stash_proxy(value: str) -> str:
    """The ``proxy`` option as llm may log it: the password is kept aside, ``***`` logged.

    llm validates options twice, the second time on what the first pass returned, so a
    value whose password is ``***`` and that was stashed is taken as it is.
    """
    value = value.strip()
    problem = proxy_problem(value)
    if problem is not None:
        raise ValueError(problem)
    parts = split_url(value)
    assert parts is not None  # proxy_problem checked it
    if parts.password is None or (parts.password == "***" and value in _PROXIES):
        return value
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    logged = urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    _PROXIES[logged] = value
    return logged


CURL_PROXY_SCHEMES = ("socks4", "socks4a")  # curl speaks them, httpx2 does not
_UNESCAPED_IN_USERINFO = "/?#[]"


def proxy_userinfo(url: str) -> tuple[int, int] | None:
    """Where the ``user:password`` of a proxy URL lies (start, end), found as it would be
    typed: from after ``scheme://`` to the last ``@``, even when the URL does not parse (a
    password may hold an unescaped ``/``, ``?``, ``#`` or ``[``); None without one."""
    start = url.find("://")
    start = 0 if start < 0 else start + 3
    end = url.rfind("@")
    return (start, end) if end >= start else None


def proxy_password(url: str) -> str | None:
    """The password of a proxy URL as typed, parsable or not; None without one."""
    span = proxy_userinfo(url)
    if span is None:
        return None
    _, colon, password = url[span[0] : span[1]].partition(":")
    return password if colon else None


def blank_proxy_password(url: str) -> str:
    """``url`` as a message may show it: any password ``***``, parsable or not."""
    span = proxy_userinfo(url)
    if span is None or proxy_password(url) is None:
        return url
    user = url[span[0] : span[1]].partition(":")[0]
    return f"{url[: span[0]]}{user}:***{url[span[1] :]}"


def proxy_problem(url: str, curl: bool | None = None) -> str | None:
    """Why ``url`` cannot be used as a proxy, in words that never show its password; None
    when it can. ``curl``: through curl_cffi (True), httpx2 (False), or either (None)."""
    shown = blank_proxy_password(url)
    if "://" not in url:
        return f"the proxy {shown!r} has no scheme: write it as http://{shown} (or socks5://…)"
    scheme = url.partition("://")[0].lower()
    if scheme not in PROXY_SCHEMES + CURL_PROXY_SCHEMES:
        return f"the proxy {shown!r} is not an http://, https://, socks5:// or socks5h:// URL"
    span = proxy_userinfo(url)
    userinfo = url[span[0] : span[1]] if span else ""
    if bad := [c for c in _UNESCAPED_IN_USERINFO if c in userinfo]:
        escaped = ", ".join(f"{c} as {urllib.parse.quote(c, safe='')}" for c in bad)
        return f"the user name or password of the proxy {shown!r} must be URL-encoded ({escaped})"
    parts = split_url(url)
    if parts is None or not parts.hostname:
        return f"the proxy {shown!r} is not a valid URL"
    if curl is False and scheme in CURL_PROXY_SCHEMES:
        return (
            f"a {scheme}:// proxy needs browser impersonation (llm-chatgptfree[browser] and "
            f"-o impersonate chrome); or use a socks5:// proxy"
        )
    if curl is False and scheme.startswith("socks") and not module_available("socksio"):
        return f"a {scheme}:// proxy needs the socksio package: llm install socksio"
    if curl is False:
        try:
            httpx2.Proxy(url)
        except (httpx2.InvalidURL, ValueError, TypeError):
            return f"the proxy {shown!r} is not a URL httpx2 can use"
    return None


def module_available(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def proxy_host(proxy: str | None) -> str | None:
    """A proxy as an error may name it: its host and port, never its credentials."""
    return host_of(blank_proxy_password(proxy)).rpartition("@")[2] if proxy else None


def checked_impersonation(value: str) -> str:
    """``none``, or a curl_cffi browser profile such as ``chrome`` (needs the extra)."""
    value = value.strip().lower()
    if value in ("none", "off", "no", "false", ""):
        return "none"
    if not module_available("curl_cffi"):
        raise ValueError(
            "browser impersonation needs curl_cffi: llm install 'llm-chatgptfree[browser]'"
        )
    from curl_cffi.requests import BrowserType, impersonate

    aliases = {name[8:].lower() for name in dir(impersonate) if name.startswith("DEFAULT_")}
    if value not in {browser.value for browser in BrowserType} | aliases:
        raise ValueError(f"unknown browser {value!r}: try chrome, edge, safari or firefox")
    return value


def chosen_profile(chosen: str | None, user_agent: str | None) -> str:
    """The browser profile to play: Chrome by default; with the user's User-Agent, the
    profile closest to its browser, within the family the user chose if any (``chrome``:
    which Chrome); a profile the user named (``chrome131``) or ``none`` stands as it is."""
    if chosen and (chosen == "none" or any(c.isdigit() for c in chosen)):
        return chosen
    if not user_agent:
        return chosen or "chrome"
    family = chosen.partition("_")[0] if chosen else ""
    profiles = [p for p in curl_profiles() if p.startswith(family)]
    return profile_for_user_agent(user_agent, profiles) or chosen or "chrome"


@dataclass(frozen=True)
class TransportSettings:
    """What changes a connection: the proxy and the browser to impersonate."""

    proxy: str | None = None  # explicit: -o proxy or $CHATGPTFREE_PROXY, password included
    impersonate: str | None = None  # a curl_cffi profile, or None for h11
    standard: tuple[tuple[str, str], ...] = ()  # the standard proxy variables, read once
    asked: str | None = field(default=None, compare=False)  # the profile as the user chose it

    @classmethod
    def of(cls, proxy_option: str | None, impersonate_option: str | None) -> TransportSettings:
        proxy = _PROXIES.get(proxy_option or "", proxy_option) or os.environ.get(PROXY_ENV) or None
        proxy = proxy.strip() if proxy else None
        chosen = impersonate_option or os.environ.get(IMPERSONATE_ENV, "").strip().lower()
        if chosen:
            try:
                chosen = checked_impersonation(chosen)
            except ValueError as error:
                raise ChatgptFreeError(sentence(f"{IMPERSONATE_ENV}: {error}")) from None
        asked = chosen
        if chosen or module_available("curl_cffi"):  # the extra: look like a browser by default
            chosen = chosen_profile(chosen or None, os.environ.get(USER_AGENT_ENV))
        standard = tuple(sorted(urllib.request.getproxies().items()))
        settings = cls(proxy, None if chosen in ("", "none") else chosen, standard, asked or None)
        settings.check_proxies("-o proxy" if proxy_option else f"${PROXY_ENV}")
        return settings

    def played_by(self, user_agent: str) -> TransportSettings:
        """The same, with the curl profile closest to ``user_agent``'s browser (the one a
        stored clearance was earned with), unless the user named a profile."""
        if self.impersonate is None:
            return self
        return replace(self, impersonate=chosen_profile(self.asked, user_agent))

    def check_proxies(self, source: str) -> None:
        """Every proxy this prompt may use can be used, or a sentence says why (password
        blanked): the explicit one, else the standard variables' (``source`` names it)."""
        curl = self.impersonate is not None
        if self.proxy:
            found = [(source, self.proxy)]
        else:
            standard = dict(self.standard)
            found = [(f"${k.upper()}_PROXY", standard.get(k)) for k in ("http", "https", "all")]
            found = [(name, url) for name, url in found if url]
        for name, url in found:
            if (problem := proxy_problem(url, curl)) is not None:
                raise ChatgptFreeError(sentence(f"{name}: {problem}"))

    def proxy_for(self, url: str) -> str | None:
        """The proxy a request to ``url`` goes through: the explicit one, else the standard
        environment variables (``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``…)."""
        if self.proxy:
            return self.proxy
        if not self.standard:  # the usual case: no environment to walk for every request
            return None
        parts = split_url(url)
        if parts is None or urllib.request.proxy_bypass(parts.netloc):
            return None
        proxies = dict(self.standard)
        return proxies.get(parts.scheme) or proxies.get("all") or None

    def passwords(self) -> list[str]:
        """Every proxy password in play, to keep out of messages."""
        urls = [self.proxy or "", *dict(self.standard).values()]
        typed = [p for url in urls if (p := proxy_password(url))]
        return typed + [urllib.parse.unquote(p) for p in typed]


# -- what a request is on the wire, for either library --------------------------------------


def request_content(request: Request) -> tuple[bytes, dict[str, str]]:
    """The body of ``request`` and the headers that describe it."""
    if request.form is None:
        return b"", {}
    if request.multipart:
        return multipart_body(request.form)
    content = urllib.parse.urlencode(request.form).encode()
    return content, {"Content-Type": "application/x-www-form-urlencoded"}


def multipart_body(form: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """``form`` as ``multipart/form-data``, as a browser's ``FormData`` sends it."""
    boundary = "----WebKitFormBoundary" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))
    parts = []
    for name, value in form.items():
        quoted = name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{quoted}"\r\n\r\n'
        parts += [head.encode(), value.encode(), b"\r\n"]
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def wire_headers(request: Request, extra: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """The request's headers as bytes; a value that HTTP cannot carry is refused in a
    sentence (a cookie pasted with characters beyond Latin-1, say)."""
    encoded = []
    for name, value in {**extra, **request.headers}.items():
        try:
            encoded.append((name.encode("ascii"), value.encode("latin-1")))
        except UnicodeEncodeError:
            raise RequestFailed(f"the {name} header has characters HTTP cannot send") from None
        if any(c in value for c in "\r\n\0"):
            raise RequestFailed(f"the {name} header has a line break in it")
    return encoded


def http_host(url: str) -> str:
    """The ``Host`` header of ``url``: its host in ASCII, and its port if not the default."""
    parts = urllib.parse.urlsplit(url)
    host = normal_host(parts.hostname or "")
    if ":" in host:
        host = f"[{host}]"
    return host if parts.port in (None, DEFAULT_PORTS.get(parts.scheme)) else f"{host}:{parts.port}"


def reply_of(status: int, reason: str, headers: Iterable[tuple[str, str]], url: str) -> Reply:
    lowered = [(k.lower(), v) for k, v in headers]
    return Reply(
        status=status,
        reason=reason,
        headers={k: v for k, v in lowered if k != "set-cookie"},
        url=url,
        set_cookies=[v for k, v in lowered if k == "set-cookie"][:50],
    )


Table = tuple[tuple[type[BaseException], type[TransportProblem]], ...]


@contextlib.contextmanager
def mapped(table: Table, proxy: str | None) -> Iterator[None]:
    """A library's own exceptions as the core's ``TransportProblem``s, by a table (httpcore's
    ``map_exceptions``). Anything else is left alone: it is a bug, not a site failure."""
    try:
        yield
    except TransportProblem:
        raise
    except tuple(kind for kind, _ in table) as error:
        problem = next(problem for kind, problem in table if isinstance(error, kind))
        detail = one_line(str(error)) or type(error).__name__
        raise (
            CannotConnect(detail, proxy) if problem is CannotConnect else problem(detail)
        ) from None


# -- response bodies: Content-Encoding undone in bounded pieces ----------------------------

DECODED_PIECE = 1 << 20


class BodyDecoder:
    """gzip or deflate undone a bounded piece at a time, so that a small body inflating to
    gigabytes is stopped by the caller's limit before it takes the memory."""

    def __init__(self, encoding: str) -> None:
        encoding = encoding.strip().lower()
        self._raw_fallback = encoding == "deflate"
        if encoding in ("", "identity"):
            self._zlib = None
        elif encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._zlib = zlib.decompressobj()
        else:
            raise RequestFailed(f"the site sent a body encoded as {encoding!r}")

    def decode(self, data: bytes) -> Iterator[bytes]:
        if self._zlib is None:
            yield data
            return
        try:
            piece = self._zlib.decompress(data, DECODED_PIECE)
        except zlib.error:
            if not self._raw_fallback:
                raise Dropped("the site sent a broken compressed body") from None
            self._zlib, self._raw_fallback = zlib.decompressobj(-zlib.MAX_WBITS), False
            piece = self._zlib.decompress(data, DECODED_PIECE)
        self._raw_fallback = False
        while piece:
            yield piece
            tail = self._zlib.unconsumed_tail
            if not tail and len(piece) < DECODED_PIECE:
                break
            try:
                piece = self._zlib.decompress(tail, DECODED_PIECE)
            except zlib.error:
                raise Dropped("the site sent a broken compressed body") from None


class Body(Protocol):
    """What both libraries hand back for a reply's body."""

    def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes as they come, Content-Encoding undone."""

    async def aclose(self) -> None:
        """Stop reading; a body read to its end leaves its connection for the next request."""


class Transport(Protocol):
    async def send(self, request: Request, idle: float) -> tuple[Reply, Body]:
        """Send ``request``; the reply's head once it is in (every wait at most ``idle``)."""

    async def aclose(self) -> None: ...


# -- TLS: the certificates a connection trusts ---------------------------------------------

_TLS_CONTEXTS: dict[tuple[str, str], ssl.SSLContext] = {}


def tls_context() -> ssl.SSLContext:
    """httpx2's default TLS settings, or the certificates of $SSL_CERT_FILE and
    $SSL_CERT_DIR (both, when both are set), built once: loading the CA bundle costs about
    20 ms, paid only by prompts that use https."""
    cafile, capath = certificate_locations()
    key = (cafile or "", capath or "")
    if key not in _TLS_CONTEXTS:
        if key == ("", ""):
            _TLS_CONTEXTS[key] = httpx2.create_ssl_context(trust_env=True)
        else:
            try:
                _TLS_CONTEXTS[key] = ssl.create_default_context(cafile=cafile, capath=capath)
            except (OSError, ssl.SSLError) as error:
                reason = getattr(error, "strerror", None) or one_line(str(error))
                raise ChatgptFreeError(
                    f"Cannot load the certificates of SSL_CERT_FILE or SSL_CERT_DIR: {reason}."
                ) from None
    return _TLS_CONTEXTS[key]


def certificate_locations() -> tuple[str | None, str | None]:
    """The CA file ($SSL_CERT_FILE) and CA folder ($SSL_CERT_DIR) to trust; None: unset."""
    return (os.environ.get("SSL_CERT_FILE") or None, os.environ.get("SSL_CERT_DIR") or None)


def curl_verify_arguments() -> dict[str, Any]:
    """curl_cffi's ``verify`` for a request: $SSL_CERT_FILE, else its own CA bundle."""
    return {"verify": certificate_locations()[0] or True}


def curl_certificate_options() -> dict[Any, str]:
    """curl options for a session: $SSL_CERT_DIR as the CA folder (``CAPATH``), for the
    site and for an https proxy, on top of the CA file."""
    from curl_cffi.const import CurlOpt

    folder = certificate_locations()[1]
    return {CurlOpt.CAPATH: folder, CurlOpt.PROXY_CAPATH: folder} if folder else {}


_UNTRUSTED = re.compile(
    r"certificate verify failed|SSL certificate problem|SSL certificate OpenSSL verify|"
    r"self[- ]signed certificate|unable to get local issuer",
    re.IGNORECASE,
)
_WRONG_HOST = re.compile(r"hostname mismatch|subject name|doesn't match", re.IGNORECASE)
_UNLOADABLE = re.compile(r"error setting certificate|trust anchors|CAfile|CApath", re.IGNORECASE)


def certificate_problem(where: str, detail: str) -> str | None:
    """The sentence for a TLS failure that certificates can mend: one this machine does
    not trust (SSL_CERT_FILE or SSL_CERT_DIR can trust it), or certificates that could
    not be loaded; None for any other failure (a certificate for another host…)."""
    if _UNLOADABLE.search(detail):
        return f"Cannot load the certificates of SSL_CERT_FILE or SSL_CERT_DIR ({detail})."
    if _UNTRUSTED.search(detail) and not _WRONG_HOST.search(detail):
        return (
            f"{where} sent a certificate that is not trusted here ({detail}): set "
            "SSL_CERT_FILE or SSL_CERT_DIR to trust its certificate."
        )
    return None


# -- HTTP/1.1: h11 on asyncio's own streams ---------------------------------------------------

READ_SIZE, MAX_HEAD = 64 * 1024, 100 * 1024  # as httpcore2: a socket read, a reply's head
KEEP_ALIVE, MAX_IDLE = 5.0, 20  # as httpx2: how long an idle connection is kept; how many
DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}
Origin = tuple[str, str, int]  # scheme, host, port


def h11_table(connecting: bool, socks: bool) -> Table:
    """h11's, socksio's, ssl's and the socket's exceptions as the core's problems: a failing
    socket is ``CannotConnect`` while connecting, ``Dropped`` once connected."""
    import h11

    failed = CannotConnect if connecting else Dropped
    rows = [(TimeoutError, TimedOut), (h11.LocalProtocolError, RequestFailed)]
    rows += [(h11.RemoteProtocolError, Dropped), (OSError, failed), (EOFError, failed)]
    if socks:
        import socksio

        rows.insert(0, (socksio.ProtocolError, ProxyFailed))
    return tuple(rows)


class Connection:
    """One HTTP/1.1 connection: h11's state machine on asyncio's reader and writer, every
    wait at most ``idle`` seconds."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.origin: Origin | None = None
        self.idle_until = 0.0
        self.restart()

    def restart(self) -> None:
        """A new HTTP conversation on the socket (once a tunnel is made, say)."""
        import h11

        self.state = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)

    async def read(self, idle: float) -> bytes:
        async with asyncio.timeout(idle):
            return await self.reader.read(READ_SIZE)

    async def write(self, data: bytes, idle: float) -> None:
        async with asyncio.timeout(idle):
            self.writer.write(data)
            await self.writer.drain()

    async def start_tls(self, context: ssl.SSLContext, host: str, idle: float) -> None:
        async with asyncio.timeout(idle):
            await self.writer.start_tls(context, server_hostname=host)

    async def exchange(
        self, method: str, target: str, headers: list, content: bytes, idle: float
    ) -> Any:
        """Send a request; the head of its reply (h11's ``Response``)."""
        import h11

        data = self.state.send(h11.Request(method=method, target=target, headers=headers))
        data += self.state.send(h11.Data(data=content)) if content else b""
        data += self.state.send(h11.EndOfMessage())
        with contextlib.suppress(ConnectionError):  # the reply may say why: read it
            await self.write(data, idle)
        while not isinstance(event := await self.next_event(idle), h11.Response):
            pass  # an interim 1xx reply
        return event

    async def next_event(self, idle: float) -> Any:
        """h11's next event of the reply, read from the socket as it needs."""
        import h11

        while (event := self.state.next_event()) is h11.NEED_DATA:
            data = await self.read(idle)
            if not data and self.state.their_state is h11.SEND_RESPONSE:
                raise Dropped("Server disconnected without sending a response.")
            self.state.receive_data(data)
        return event

    def ready_again(self) -> bool:
        """After a reply read to its end: whether the connection can carry the next."""
        import h11

        done = self.state.our_state is self.state.their_state is h11.DONE
        if done:
            self.state.start_next_cycle()
        return done


class Via:
    """A proxy, as a connection goes through it: where, and with what credentials."""

    def __init__(self, url: str) -> None:
        parts, unquote = urllib.parse.urlsplit(url), urllib.parse.unquote
        self.scheme = parts.scheme.lower()
        self.socks = self.scheme.startswith("socks")  # else an HTTP proxy
        self.host, self.port = parts.hostname or "", parts.port or DEFAULT_PORTS[self.scheme]
        self.auth = None
        if parts.username is not None:
            self.auth = (unquote(parts.username), unquote(parts.password or ""))

    def headers(self) -> list[tuple[str, str]]:
        """``Proxy-Authorization`` (Basic) for an HTTP proxy that was given a user."""
        if self.auth is None:
            return []
        return [
            (
                "Proxy-Authorization",
                "Basic " + base64.b64encode(":".join(self.auth).encode()).decode(),
            )
        ]

    async def tunnel(self, connection: Connection, host: str, port: int, idle: float) -> None:
        """Through an HTTP proxy (CONNECT) or a SOCKS5 one, on to ``host:port``."""
        if self.socks:
            return await socks5_handshake(connection, self.auth, (host, port), idle)
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        headers = [("Host", target), ("Accept", "*/*"), *self.headers()]
        head = await connection.exchange("CONNECT", target, headers, b"", idle)
        if not 200 <= head.status_code < 300:
            raise ProxyFailed(f"{head.status_code} {head.reason.decode('latin-1')}".strip())
        connection.restart()


async def socks5_handshake(
    connection: Connection, auth: tuple[str, str] | None, target: tuple[str, int], idle: float
) -> None:
    """A SOCKS5 proxy told to connect on to ``target`` (socksio), or ``ProxyFailed``."""
    from socksio import socks5

    socks, method = socks5.SOCKS5Connection(), socks5.SOCKS5AuthMethod

    async def said(request: Any) -> Any:
        socks.send(request)
        await connection.write(socks.data_to_send(), idle)
        return socks.receive_data(await connection.read(idle))

    offered = method.NO_AUTH_REQUIRED if auth is None else method.USERNAME_PASSWORD
    if (await said(socks5.SOCKS5AuthMethodsRequest([offered]))).method != offered:
        raise ProxyFailed("the SOCKS proxy refused the authentication offered")
    credentials = [part.encode() for part in auth or ()]
    if auth and not (await said(socks5.SOCKS5UsernamePasswordRequest(*credentials))).success:
        raise ProxyFailed("the SOCKS proxy refused the user name or password")
    command = socks5.SOCKS5CommandRequest.from_address(socks5.SOCKS5Command.CONNECT, target)
    if (code := (await said(command)).reply_code) != socks5.SOCKS5ReplyCode.SUCCEEDED:
        raise ProxyFailed(f"the SOCKS proxy could not connect: {code.name}")


def request_target(parts: urllib.parse.SplitResult) -> str:
    """The path and query of a URL as a request line carries them, percent-encoded."""
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return urllib.parse.quote(target, safe="!$&'()*+,;=:@/?%~[]")


class H11Transport:
    """Kept HTTP/1.1 connections for one proxy and TLS need, in one event loop: no lock, as
    nothing else runs between two awaits."""

    def __init__(self, proxy: str | None, tls: bool) -> None:
        self.proxy, self.via = proxy_host(proxy), Via(proxy) if proxy else None
        socks = self.via is not None and self.via.socks
        self.connecting, self.talking = h11_table(True, socks), h11_table(False, socks)
        self.context = tls_context() if tls else None  # no CA bundle for http:// alone
        self.idle: list[Connection] = []  # the most recently used last
        self.open: set[Connection] = set()

    async def send(self, request: Request, idle: float) -> tuple[Reply, H11Body]:
        parts = urllib.parse.urlsplit(request.url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise RequestFailed(f"cannot send a request to a {scheme}:// URL")
        content, described = request_content(request)
        extra = {"Host": http_host(request.url), "Accept-Encoding": "gzip, deflate", **described}
        if content:
            extra["Content-Length"] = str(len(content))
        target = request_target(parts)
        if self.via is not None and not self.via.socks and scheme == "http":
            target = f"http://{extra['Host']}{target}"  # absolute-form, to a forward proxy
            extra.update(self.via.headers())
        headers = wire_headers(request, extra)
        origin = (scheme, parts.hostname or "", parts.port or DEFAULT_PORTS[scheme])
        connection = self.reused(origin) or await self.connect(origin, idle)
        try:
            with mapped(self.talking, self.proxy):
                head = await connection.exchange(request.method, target, headers, content, idle)
            body = H11Body(self, connection, idle, head.headers)
        except BaseException:
            self.discard(connection)
            raise
        texts = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers]
        return reply_of(head.status_code, head.reason.decode("latin-1"), texts, request.url), body

    def reused(self, origin: Origin) -> Connection | None:
        """An idle connection to ``origin``, the most recently used; stale ones (idle too
        long, or closed by the server meanwhile) closed."""
        now = time.monotonic()
        for connection in [c for c in self.idle if now > c.idle_until or c.reader.at_eof()]:
            self.discard(connection)
        found = [c for c in self.idle if c.origin == origin]
        if found:
            self.idle.remove(found[-1])
        return found[-1] if found else None

    async def connect(self, origin: Origin, idle: float) -> Connection:
        """A new connection to ``origin``, through the proxy if there is one."""
        scheme, host, port = origin
        via = self.via
        with mapped(self.connecting, self.proxy):
            async with asyncio.timeout(idle):
                streams = await asyncio.open_connection(
                    via.host if via else host, via.port if via else port
                )
            connection = Connection(*streams)
            try:
                if via is not None and via.scheme == "https":
                    await connection.start_tls(self.context, via.host, idle)
                if via is not None and (scheme == "https" or via.socks):
                    await via.tunnel(connection, host, port, idle)
                if scheme == "https":
                    await connection.start_tls(self.context, host, idle)
            except BaseException:
                connection.writer.close()
                raise
        connection.origin = origin
        self.open.add(connection)
        return connection

    def keep(self, connection: Connection) -> None:
        """A connection whose reply was read to its end: kept idle if it can go on."""
        if not connection.ready_again():
            return self.discard(connection)
        connection.idle_until = time.monotonic() + KEEP_ALIVE
        self.idle.append(connection)
        if len(self.idle) > MAX_IDLE:
            self.discard(self.idle[0])

    def discard(self, connection: Connection) -> None:
        if connection in self.idle:
            self.idle.remove(connection)
        self.open.discard(connection)
        connection.writer.close()

    async def aclose(self) -> None:
        for connection in list(self.open):
            self.discard(connection)


class H11Body:
    """A reply's body as h11 reads it; read to its end, its connection is kept."""

    def __init__(
        self, transport: H11Transport, connection: Connection, idle: float, headers: Any
    ) -> None:
        self.transport, self.connection, self.idle = transport, connection, idle
        encoding = [v for k, v in headers if k == b"content-encoding"]
        self.decoder = BodyDecoder(encoding[-1].decode("latin-1") if encoding else "")
        self.ended = False

    async def chunks(self) -> AsyncIterator[bytes]:
        import h11

        with mapped(self.transport.talking, self.transport.proxy):
            while True:
                event = await self.connection.next_event(self.idle)
                if isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    break
                for piece in self.decoder.decode(event.data) if isinstance(event, h11.Data) else ():
                    yield piece
        self.ended = True
        self.transport.keep(self.connection)

    async def aclose(self) -> None:
        if not self.ended:
            self.ended = True
            self.transport.discard(self.connection)


# -- curl_cffi: a real browser's TLS and HTTP/2 fingerprint (the [browser] extra) ------------


CURL_PROBLEMS: dict[int, type[TransportProblem]] = {
    5: ProxyFailed,  # could not resolve the proxy
    97: ProxyFailed,  # the proxy handshake failed
    6: CannotConnect,  # could not resolve the host
    7: CannotConnect,  # could not connect
    28: TimedOut,
    63: TooLarge,  # over MAXFILESIZE: ANSWER_LIMIT bytes, counted after decompression
    16: Dropped,  # HTTP/2 framing
    18: Dropped,  # partial file: the body ended early
    52: Dropped,  # got nothing
    55: Dropped,  # send error
    56: Dropped,  # receive error
    92: Dropped,  # HTTP/2 stream
}


@contextlib.contextmanager
def curl_problems(proxy: str | None) -> Iterator[None]:
    """curl_cffi's exceptions as the core's ``TransportProblem``s, by curl's error code."""
    from curl_cffi import CurlError

    try:
        yield
    except CurlError as error:
        text = re.sub(r"^Failed to perform, curl: \(\d+\) ", "", str(error))
        text = one_line(text.split(" See https://curl.se/")[0]) or type(error).__name__
        kind = CURL_PROBLEMS.get(int(getattr(error, "code", 0) or 0), RequestFailed)
        if kind is CannotConnect:
            raise CannotConnect(text, proxy) from None
        if kind is TooLarge:
            raise TooLarge(ANSWER_LIMIT) from None
        raise kind(text) from None


def curl_arguments(request: Request, idle: float, proxy: str | None) -> dict:
    """What curl_cffi's ``request`` is given: the browser profile supplies its own
    User-Agent and client hints unless the user chose a User-Agent."""
    headers = curl_headers(request.headers)
    sendable = {k: v for k, v in headers.items() if v is not None}
    wire_headers(Request(request.method, request.url, sendable), {})  # as the h11 transport refuses
    content, described = request_content(request)
    return {
        "method": request.method,
        "url": request.url,
        "headers": {**described, **headers},
        "data": content or None,
        "stream": True,
        "allow_redirects": False,
        "timeout": (idle, idle),
        "proxy": proxy,
        **curl_verify_arguments(),
        "max_recv_speed": 0,
    }


class CurlTransport:
    """curl_cffi's asyncio session: one curl multi handle and its connection cache."""

    def __init__(self, proxy: str | None, profile: str) -> None:
        from curl_cffi import requests as curl
        from curl_cffi.const import CurlOpt

        self.proxy, self.proxy_url = proxy_host(proxy), proxy
        # curl decompresses (as the browser it plays does); this bounds what it inflates
        bound = {CurlOpt.MAXFILESIZE_LARGE: ANSWER_LIMIT, **curl_certificate_options()}
        self.session = curl.AsyncSession(impersonate=profile, curl_options=bound)

    async def send(self, request: Request, idle: float) -> tuple[Reply, CurlBody]:
        with curl_problems(self.proxy):
            arguments = curl_arguments(request, idle, self.proxy_url)
            response = await self.session.request(**arguments)
        self.session.cookies.clear()  # the core keeps cookies, per host
        head = response.headers.multi_items()
        reply = reply_of(response.status_code, str(response.reason or ""), head, request.url)
        return reply, CurlBody(response, self.session, self.proxy)

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.session.close()


class CurlBody:
    def __init__(self, response: Any, session: Any, proxy: str | None) -> None:
        self.response, self.session, self.proxy = response, session, proxy

    async def chunks(self) -> AsyncIterator[bytes]:
        with curl_problems(self.proxy):
            async for chunk in self.response.aiter_content():
                yield chunk

    async def aclose(self) -> None:
        task = getattr(self.response, "astream_task", None)
        if task is not None and not task.done():
            with contextlib.suppress(Exception):
                self.session.acurl.remove_handle(self.response.curl)  # abort the transfer
            await asyncio.wait({task}, timeout=1.0)


# -- a body read as it arrives, a bounded way ahead of its reader ---------------------------


class Arrivals:
    """A body read by a task as it comes, at most ``READ_AHEAD`` bytes ahead of the reader;
    each ``take`` hands over all that came since the last, in one piece, so that a burst
    of HTTP chunks reaches the answer reader, and llm, as one piece."""

    def __init__(self, body: Body) -> None:
        self.body = body
        self.came = bytearray()  # what came and was not taken, in one piece
        self.ended = False
        self.problem: Exception | None = None
        self.discard = False  # after the answer's end marker: read on, keep nothing
        self.discarded = 0
        self.arrived, self.room = asyncio.Event(), asyncio.Event()
        self.room.set()
        self.task = asyncio.ensure_future(self.fill())

    async def fill(self) -> None:
        try:
            async for chunk in self.body.chunks():
                if self.discard:
                    self.discarded += len(chunk)
                    if self.discarded > SMALL_BODY_LIMIT:
                        return  # not a body that ends soon: let it be closed
                    continue
                self.came += chunk
                self.arrived.set()
                if len(self.came) >= READ_AHEAD:
                    self.room.clear()
                    await self.room.wait()
        except Exception as problem:  # a TransportProblem, or a bug: raised by ``take``
            self.problem = problem
        finally:
            self.ended = True
            self.arrived.set()

    async def take(self, until: float) -> bytearray | None:
        """All that came, in one piece; None once the body has ended. Waits for something
        to come until ``until`` (``time.monotonic()``), then ``TimedOut``."""
        while not self.came and not self.ended:
            self.arrived.clear()
            await within(self.arrived.wait(), until)
        if self.came:
            data, self.came = self.came, bytearray()
            self.room.set()
            return data
        if self.problem is not None:
            raise self.problem
        return None

    async def drain(self) -> None:
        """Read on to the body's end for a moment after the answer's end marker: a body that
        ends keeps its connection for the next request; one that does not is closed."""
        self.discard, self.discarded, self.came = True, 0, bytearray()
        self.room.set()
        await asyncio.wait({self.task}, timeout=DRAIN_SECONDS)

    async def aclose(self) -> None:
        if not self.task.done():
            self.task.cancel()
            await asyncio.wait({self.task}, timeout=1.0)
        await self.body.aclose()


async def within(awaitable: Awaitable[Any], until: float) -> Any:
    """``awaitable``'s result, or ``TimedOut`` at ``until`` (``time.monotonic()``)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout_at(loop.time() + (until - time.monotonic())):
            return await awaitable
    except TimeoutError:
        raise TimedOut("the deadline passed") from None


async def read_whole(arrivals: Arrivals, step: ReadBody) -> bytes:
    """A whole body, refused once it passes the step's limit; or what came as soon as the
    step finds it complete (its end is then drained, so its connection is kept)."""
    body, checks = bytearray(), CompletenessChecks(step)
    while (data := await arrivals.take(step.deadline)) is not None:
        body += data
        if len(body) > step.limit:
            raise TooLarge(step.limit)
        if checks.whole(body, data):
            await arrivals.drain()
            break
    return bytes(body)


class CompletenessChecks:
    """At most a few completeness checks per body, each when a piece may end it: a reply
    of a million closing braces costs no more than one read."""

    def __init__(self, step: ReadBody) -> None:
        self.complete = step.complete
        self.left = 8

    def whole(self, body: bytearray, data: bytes) -> bool:
        if self.complete is None or not self.left or not data.rstrip().endswith(b"}"):
            return False
        self.left -= 1
        return self.complete(bytes(body))


async def stream_text(arrivals: Arrivals, step: StreamBody) -> AsyncIterator[str]:
    """Feed a body to the step's reader; yield its text as it comes; stop at its end.

    Until the first text the step's deadline holds; then every wait lasts ``idle`` at most,
    and the whole answer until ``answer_deadline``."""
    reader = step.reader
    while not reader.ended:
        until = step.deadline
        if reader.chars:
            until = min(step.answer_deadline, time.monotonic() + step.idle)
        data = await arrivals.take(until)
        if data is None:
            break
        if text := reader.feed(data):
            yield text
    else:
        if reader.failure is None:
            await arrivals.drain()
    if text := reader.finish():
        yield text


# -- one pool of transports per event loop ---------------------------------------------------


class Pool:
    """An event loop's transports, one per proxy, TLS need and browser: so a chat, a Python
    conversation or a loop of prompts reuses its connections."""

    def __init__(self) -> None:
        self.open: dict[tuple, Transport] = {}

    def get(self, settings: TransportSettings, url: str) -> Transport:
        proxy = settings.proxy_for(url)
        tls = url.lower().startswith("https:") or (proxy or "").lower().startswith("https:")
        certificates = certificate_locations()
        key = (proxy, tls, settings.impersonate, certificates if tls else None)
        if key not in self.open:
            browser = settings.impersonate
            self.open[key] = CurlTransport(proxy, browser) if browser else H11Transport(proxy, tls)
        return self.open[key]

    async def aclose(self) -> None:
        transports, self.open = list(self.open.values()), {}
        for transport in transports:
            await transport.aclose()


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Pool] = weakref.WeakKeyDictionary()
_KEEPERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()


async def loop_pool() -> Pool:
    """The running loop's pool, made on first use and closed when the loop shuts its async
    generators down (``asyncio.run`` does; the background loop does at exit)."""
    loop = asyncio.get_running_loop()
    if loop not in _POOLS:
        pool = _POOLS[loop] = Pool()

        async def keeper() -> AsyncIterator[None]:
            try:
                yield
            finally:
                await pool.aclose()

        _KEEPERS[loop] = keeper()
        await anext(_KEEPERS[loop])  # now the loop knows it, and closes it at shutdown
    return _POOLS[loop]


# -- the driver: the core's steps performed, once for both kinds of model --------------------

_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def loop_lock(key: str) -> asyncio.Lock:
    locks = _LOCKS.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(key, asyncio.Lock())


async def drive(visit: Visit) -> AsyncIterator[str]:
    """Perform a visit's steps; yield its text. Every wait ends by the step's deadline;
    file work runs off the event loop."""
    try:
        async for text in perform_steps(visit):
            yield text
    except Exception as error:
        if isinstance(error, ChatgptFreeError):
            raise
        raise plugin_bug(error, visit.secrets) from None


def plugin_bug(error: Exception, secrets: Secrets) -> ChatgptFreeError:
    """An exception that is neither the site's nor the network's: this plugin's own bug,
    said in one sentence (its traceback on stderr with ``LLM_DEBUG=1``)."""
    if os.environ.get("LLM_DEBUG"):
        import traceback

        traceback.print_exception(error, file=sys.stderr)
    what = secrets.redact(one_line(f"{type(error).__name__}: {error}", 160))
    return ChatgptFreeError(
        f"llm-chatgptfree failed with a bug of its own ({what}); please report it at "
        f"{ISSUES_URL} (LLM_DEBUG=1 shows the details)."
    )


async def perform_steps(visit: Visit) -> AsyncIterator[str]:
    """The driver's loop: each step the visit yields performed, its result sent back."""
    pool = await loop_pool()
    steps = visit.steps()
    arrivals: Arrivals | None = None
    locked: dict[str, asyncio.Lock] = {}
    result: Any = None
    problem: Exception | None = None
    try:
        while True:
            try:
                step = steps.throw(problem) if problem is not None else steps.send(result)
            except StopIteration:
                return
            result = problem = None
            if isinstance(step, str):
                yield step
                continue
            try:
                if isinstance(step, Storage):
                    try:
                        result = await asyncio.to_thread(step.work)
                    except Exception as error:  # thrown into the visit, which decides
                        problem = error
                elif isinstance(step, StreamBody):
                    async for text in stream_text(arrivals, step):
                        yield text
                elif isinstance(step, Send):
                    if arrivals is not None:
                        await arrivals.aclose()
                    arrivals = None
                    transport = pool.get(visit.settings, step.request.url)
                    result, body = await within(
                        transport.send(step.request, step.idle), step.deadline
                    )
                    arrivals = Arrivals(body)
                elif isinstance(step, ReadBody):
                    result = await read_whole(arrivals, step)
                elif isinstance(step, Pause):
                    await asyncio.sleep(step.seconds)
                elif isinstance(step, Lock) and step.key not in locked:
                    lock = loop_lock(step.key)
                    try:
                        await within(lock.acquire(), step.deadline)
                    except TimedOut:
                        raise TimedOut("another prompt held the page too long") from None
                    locked[step.key] = lock
                elif isinstance(step, Unlock) and step.key in locked:
                    locked.pop(step.key).release()
            except TransportProblem as error:
                problem = error
    finally:
        if arrivals is not None:
            await arrivals.aclose()
        for lock in locked.values():
            lock.release()
        steps.close()


# -- blocking prompts: the driver on one background event loop -------------------------------

CLOSE_SECONDS = 2.0  # longest a blocking prompt waits for the background loop to tidy up
_BACKGROUND: list[asyncio.AbstractEventLoop] = []
_BACKGROUND_GUARD = threading.Lock()


def background_loop() -> asyncio.AbstractEventLoop:
    """The process's event loop for blocking prompts, in a thread of its own, started once:
    every blocking prompt of every thread shares its pool of connections."""
    with _BACKGROUND_GUARD:
        if not _BACKGROUND:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="chatgptfree", daemon=True)
            thread.start()
            _BACKGROUND.append(loop)
            atexit.register(stop_background_loop, loop)
        return _BACKGROUND[0]


def stop_background_loop(loop: asyncio.AbstractEventLoop) -> None:
    """At exit: end what still runs there (briefly), then stop the loop."""
    with contextlib.suppress(Exception):
        on_loop(loop, wind_down(), CLOSE_SECONDS)
    loop.call_soon_threadsafe(loop.stop)


async def wind_down() -> None:
    """Cancel the tasks still running (the read-ahead of an answer left unread, when stdout
    closed), then close the generators they left open: closed the other way round, a
    generator still being run by its task fails, and asyncio prints it."""
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()


def on_loop(
    loop: asyncio.AbstractEventLoop, awaitable: Awaitable[Any], timeout: float | None
) -> Any:
    """Run ``awaitable`` on ``loop`` and wait here for its result (``timeout`` at most); an
    interrupt here (Ctrl-C) cancels it there."""

    async def run() -> Any:
        return await awaitable

    future = asyncio.run_coroutine_threadsafe(run(), loop)
    try:
        return future.result(timeout)
    except BaseException:
        future.cancel()
        raise


def run_blocking(visit: Visit) -> Iterator[str]:
    """A visit's text, for a blocking caller: the driver runs on the background loop, one
    piece at a time, as this generator is asked for it. Closing the generator early (a
    ``break``, a closed pipe) closes the visit there, within ``CLOSE_SECONDS``."""
    loop = background_loop()
    texts = drive(visit)
    try:
        while (text := on_loop(loop, anext(texts, None), None)) is not None:
            yield text
    finally:
        if loop.is_running() and not sys.is_finalizing():
            with contextlib.suppress(Exception):
                on_loop(loop, texts.aclose(), CLOSE_SECONDS)


async def reset_pools() -> None:
    """Close every connection of this loop's pool (the bench measures cold pools with it)."""
    pool = _POOLS.get(asyncio.get_running_loop())
    if pool is not None:
        await pool.aclose()


def reset_blocking_pool() -> None:
    """Close the background loop's connections: the next blocking prompt starts cold."""
    if _BACKGROUND:
        on_loop(_BACKGROUND[0], reset_pools(), CLOSE_SECONDS)


# ---------------------------------------------------------------------------------------
# Storage: files in the plugin's folder of llm's user directory
# ---------------------------------------------------------------------------------------


class StorageError(ChatgptFreeError):
    """A file of ours exists but cannot be used; it is reported, never overwritten."""


def my_uid() -> int | None:
    """The user this process runs as, where files have owners (None on Windows)."""
    return os.geteuid() if hasattr(os, "geteuid") else None


def not_a_folder(folder: Path) -> StorageError:
    return StorageError(f"{folder} is not a folder: move it away, and the plugin makes its own.")


def ensure_folder(folder: Path) -> None:
    """``folder`` made for the owner alone (0700, whatever the umask), or a ``StorageError``
    naming it: a plain file in its place, a folder that cannot be made."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        found = folder.stat()
    except FileExistsError:
        raise not_a_folder(folder) from None
    except OSError as error:
        raise StorageError(f"Cannot make the folder {folder}: {error.strerror}.") from None
    if not stat.S_ISDIR(found.st_mode):
        raise not_a_folder(folder)
    if found.st_uid == my_uid() and found.st_mode & 0o077:  # made by an earlier release
        with contextlib.suppress(OSError):
            os.chmod(folder, 0o700)


def write_private_file(path: Path, text: str) -> None:
    """Write ``text`` atomically (temporary file, then rename), for the owner only; a
    symbolic link at ``path`` is replaced, never followed. ``OSError`` when it fails."""
    ensure_folder(path.parent)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


def read_json_file(path: Path) -> Any:
    """A file's JSON; None when it does not exist; ``StorageError`` when it cannot be used
    (unreadable, a symbolic link, not the owner's, writable by others, larger than
    ``FILE_LIMIT``, not JSON, nested beyond reason). Another local user's file would
    choose where prompts go: it is never read."""
    try:
        handle = os.open(path, os.O_RDONLY | _NO_FOLLOW)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise not_a_folder(path.parent) from None
    except OSError as error:
        if path.is_symlink():
            raise StorageError(f"{path} is a symbolic link: not followed; remove it.") from None
        raise StorageError(f"Cannot read {path}: {error.strerror}.") from None
    found = os.fstat(handle)
    refusal = untrusted(path, found)
    if refusal:
        os.close(handle)
        raise StorageError(refusal)
    with os.fdopen(handle, "rb") as file:  # read(n) would allocate n bytes before reading
        try:
            data = file.read(min(found.st_size, FILE_LIMIT) + 1)
        except OSError as error:
            raise StorageError(f"Cannot read {path}: {error.strerror}.") from None
    if len(data) > FILE_LIMIT:
        raise StorageError(f"{path} is over {FILE_LIMIT // 2**20} MB: fix it or remove it.")
    value = parse_json(data)
    if value is None:
        raise StorageError(f"{path} is not valid JSON: fix it or remove it.")
    return value


def untrusted(path: Path, found: os.stat_result) -> str | None:
    """Why the file ``found`` at ``path`` must not be read, or None."""
    if not stat.S_ISREG(found.st_mode):
        return f"{path} is not a regular file: not read; remove it."
    uid = my_uid()
    if uid is None:
        return None
    if found.st_uid != uid:
        return f"{path} belongs to another user (uid {found.st_uid}): not read; remove it."
    if found.st_mode & 0o022:
        return (
            f"{path} can be changed by other users (mode {stat.S_IMODE(found.st_mode):o}): "
            f"not read; if its content is yours, run 'chmod 600 {path}'."
        )
    return None


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold the lock of ``path`` across processes, for a read-modify-write; a lock that
    cannot be taken is a ``StorageError`` naming its file."""
    ensure_folder(path.parent)
    import filelock

    lock_path = path.with_name(f".{path.name}.lock")
    if lock_path.is_symlink():
        raise StorageError(f"{lock_path} is a symbolic link: not followed; remove it.")
    lock = filelock.FileLock(lock_path, timeout=LOCK_SECONDS, mode=0o600)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise StorageError(
            f"{path} stayed locked by another llm process for {LOCK_SECONDS:g} s: try again."
        ) from None
    except OSError as error:
        raise StorageError(f"Cannot lock {lock_path}: {error.strerror or error}.") from None
    try:
        yield
    finally:
        lock.release()


T = TypeVar("T")  # the value a state file holds
R = TypeVar("R")  # what a change of it gives back


@dataclass(frozen=True)
class StateFile(Generic[T]):
    """One JSON file of the plugin's folder, read as a value and written from it, with its
    policy: a user's file (sites, cookies, bots) that cannot be used is reported and never
    overwritten; a cache (pages, identity) is then ignored, and rewritten. Writes are
    atomic and for the owner only."""

    name: str
    parse: Callable[[Any], T]  # the file's JSON (None: no file) as a value, or StorageError
    dump: Callable[[T], Any]  # the value as the file's JSON
    cache: bool = False

    @property
    def path(self) -> Path:
        return llm.user_dir() / "chatgptfree" / self.name

    def read(self) -> Any:
        """The file's JSON; None when there is none (or, for a cache, none usable)."""
        try:
            return read_json_file(self.path)
        except StorageError:
            if self.cache:
                return None
            raise

    def load(self) -> T:
        return self.parse(self.read())

    def write(self, value: T) -> None:
        try:
            write_private_file(self.path, json.dumps(self.dump(value), indent=1))
        except OSError as error:
            raise StorageError(f"Cannot write {self.path}: {error.strerror or error}.") from None

    def update(self, change: Callable[[T], R]) -> R:
        """Under the file's lock: ``change`` gets the value read and changes it in place;
        its result is returned once the value is written."""
        with file_lock(self.path):
            value = self.load()
            result = change(value)
            self.write(value)
        return result


# -- the page cache: chat boxes per page and bot, for ten hours -----------------------------

PAGES_FORMAT = 2
Pages = dict[str, dict[str, ChatBox]]  # page → bot choice → its chat box


def pages_of(data: Any) -> Pages:
    """The well-formed chat boxes of a pages file's JSON; none from another format."""
    if not isinstance(data, dict) or data.get("format") != PAGES_FORMAT:
        return {}
    sites: Pages = {}
    entries = data.get("sites")
    for site, boxes in entries.items() if isinstance(entries, dict) else ():
        if not isinstance(boxes, dict):
            continue
        for key, fields in boxes.items():
            with contextlib.suppress(TypeError, AttributeError):
                box = ChatBox(**fields)
                if box.is_well_formed():
                    sites.setdefault(site, {})[key] = box
    return sites


def pages_data(sites: Pages) -> Any:
    entries = {
        site: {key: asdict(box) for key, box in boxes.items()} for site, boxes in sites.items()
    }
    return {"format": PAGES_FORMAT, "sites": entries}


PAGES_FILE = StateFile("pages.json", pages_of, pages_data, cache=True)


class PageCache:
    """Chat boxes per page and bot choice, in memory and in a private JSON file.

    A box is reused for ``CACHE_MAX_AGE`` seconds. The file is a cache and nothing more:
    when it cannot be read, written or understood it is ignored (and rewritten).
    """

    def __init__(self) -> None:
        self._memory: dict[Path, Pages] = {}  # per user directory, as the file

    def memory(self) -> Pages:
        return self._memory.setdefault(PAGES_FILE.path, {})

    def get(self, site: str, choice: str, newer_than: float = 0.0) -> ChatBox | None:
        """The cached box when it is fresh and was fetched after ``newer_than``."""
        box = self.memory().get(site, {}).get(choice)
        if box is None:
            box = PAGES_FILE.load().get(site, {}).get(choice)
        now = time.time()
        if box is None or not newer_than < box.fetched_at <= now:
            return None
        if now - box.fetched_at > CACHE_MAX_AGE:
            return None
        self.memory().setdefault(site, {})[choice] = box
        return box

    def put(self, site: str, choice: str, box: ChatBox, boxes: Iterable[ChatBox]) -> None:
        """Keep ``box`` for ``choice``, and every box of the page for its own bot id."""
        entries = {box.bot_id: box for box in boxes} | {choice: box}
        self.change(lambda sites: sites.setdefault(site, {}).update(entries))

    def renew_nonce(self, site: str, old: ChatBox, fresh: ChatBox) -> None:
        """A fresh nonce for every box of ``site`` that had ``old``'s (2.x: one per page)."""

        def renew(sites: Pages) -> None:
            for key, box in sites.get(site, {}).items():
                if box.nonce == old.nonce:
                    sites[site][key] = replace(box, nonce=fresh.nonce, fetched_at=fresh.fetched_at)

        self.change(renew)

    def forget(self, site: str | None = None, strict: bool = False) -> int:
        """Drop one page's boxes, or all; returns how many pages were dropped. ``strict``
        (for ``cache clear``): a file that cannot be written is a ``StorageError``."""

        def drop(sites: Pages) -> int:
            dropped = [key for key in sites if site in (None, key)]
            for key in dropped:
                del sites[key]
            return len(dropped)

        return self.change(drop, strict) or 0

    def change(self, change: Callable[[Pages], R], strict: bool = False) -> R | None:
        """``change`` made to the file, then to the memory, which still serves this process
        when the file cannot be used; what it gave for the file."""
        result = None
        try:
            result = PAGES_FILE.update(change)
        except StorageError:
            if strict:
                raise
        change(self.memory())
        return result


PAGE_CACHE = PageCache()


# -- who this install is to the sites ------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """1.x ``wpaicg_chat_client_id`` and 2.x ``session_id``: made once and kept, as a
    browser keeps them in its storage."""

    client_id: str
    session_id: str


_IDENTITIES: dict[Path, Identity] = {}
_ID_ALPHABET = string.ascii_letters + string.digits


def identity_of(data: Any) -> Identity | None:
    if not isinstance(data, dict):
        return None
    client, session = data.get("client_id"), data.get("session_id")
    if not (
        isinstance(client, str) and len(client) == 10 and client.isascii() and client.isalnum()
    ):
        return None
    try:
        return Identity(client, str(uuid.UUID(str(session))))
    except ValueError:
        return None


def new_identity() -> Identity:
    return Identity("".join(secrets.choice(_ID_ALPHABET) for _ in range(10)), str(uuid.uuid4()))


# its value: the file's identity, or a new one to keep
IDENTITY_FILE = StateFile(
    "identity.json", lambda data: identity_of(data) or new_identity(), asdict, cache=True
)


def identity() -> Identity:
    """This install's identity: the kept one, or a new one kept from now on."""
    path = IDENTITY_FILE.path
    if path not in _IDENTITIES:
        found = identity_of(IDENTITY_FILE.read())  # the usual case: no lock needed to read
        if found is None:
            found = new_identity()  # an unwritable folder: a new identity next time, no harm
            with contextlib.suppress(StorageError):
                found = IDENTITY_FILE.update(lambda kept: kept)
        _IDENTITIES[path] = found
    return _IDENTITIES[path]


# -- where each conversation lives ---------------------------------------------------------

CONVERSATIONS_FILE = StateFile(
    "conversations.json",
    lambda data: data if isinstance(data, dict) else {},
    lambda data: dict(list(data.items())[-CONVERSATIONS_KEPT:]),  # the latest only
)


def conversation_site(conversation_id: str) -> str | None:
    """The page a conversation began on; None if it is not known. A file that cannot be
    read is said, rather than risk sending the conversation somewhere else."""
    entry = CONVERSATIONS_FILE.load().get(conversation_id)
    site = entry.get("site") if isinstance(entry, dict) else None
    return site if isinstance(site, str) and is_http_url(site) else None


def remember_conversation(conversation_id: str, site: str) -> None:
    """Keep the page of a conversation (the latest ``CONVERSATIONS_KEPT``); an answer
    already given never fails for this file."""

    def change(data: dict[str, Any]) -> None:
        data.pop(conversation_id, None)
        data[conversation_id] = {"site": site, "since": int(time.time())}

    with contextlib.suppress(StorageError):
        CONVERSATIONS_FILE.update(change)


# -- saved sites ----------------------------------------------------------------------------

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


def sites_of(data: Any) -> dict[str, SavedSite]:
    """The saved sites of a sites file's JSON, by name, or a ``StorageError``."""
    path = SITES_FILE.path
    if data is None:
        return {}
    entries = data.get("sites") if isinstance(data, dict) else None
    if not isinstance(entries, dict) or data.get("format") != SITES_FORMAT:
        raise StorageError(f"{path} is not a sites file of this plugin: fix or remove it.")
    sites = {}
    for name, entry in entries.items():
        url = entry.get("url") if isinstance(entry, dict) else None
        if not (isinstance(url, str) and is_http_url(url) and SITE_NAME.fullmatch(name)):
            raise StorageError(f"{path}: the entry {name!r} has no usable url: fix or remove it.")
        bot = entry.get("bot")
        sites[name] = SavedSite(name, public_url(url), None if bot is None else str(bot))
    return sites


def sites_data(sites: dict[str, SavedSite]) -> Any:
    entries = {
        name: {k: v for k, v in asdict(site).items() if k != "name" and v is not None}
        for name, site in sorted(sites.items())
    }
    return {"format": SITES_FORMAT, "sites": entries}


SITES_FILE = StateFile("sites.json", sites_of, sites_data)


# -- the bots of each site, as read by `llm chatgptfree refresh` -----------------------------

BOTS_FORMAT = 1


@dataclass(frozen=True)
class Bot:
    id: str
    label: str
    provider: str
    page: str
    image_upload: bool = False
    slug: str = ""  # its model's id under the site's, given by site_bots
    aliases: tuple[str, ...] = ()


def catalogue_of(data: Any) -> dict[str, dict]:
    """Every site's bots as last read, from a bots file's JSON, or a ``StorageError``."""
    if data is None:
        return {}
    sites = data.get("sites") if isinstance(data, dict) else None
    if not isinstance(sites, dict) or data.get("format") != BOTS_FORMAT:
        raise StorageError(f"{BOTS_FILE.path} is not a bots file of this plugin: fix or remove it.")
    return sites


BOTS_FILE = StateFile(
    "bots.json", catalogue_of, lambda sites: {"format": BOTS_FORMAT, "sites": sites}
)


def site_bots(site: str, seed: bool, taken: Iterable[str] = ()) -> list[Bot]:
    """The bots of ``site`` as last read; chatgptfree.ai's seed list if never read.

    Each gets a slug of its own, none of them in ``taken`` (names of saved sites), and the
    same one on every refresh whatever the page's order: a label's slug goes to its bot
    with the lowest id, the others' get ``-ID`` (and more, should that clash too)."""
    entry = BOTS_FILE.load().get(site)
    found: dict[str, Bot] = {}  # by id, the first of each
    if isinstance(entry, dict) and isinstance(entry.get("bots"), list):
        for bot in entry["bots"][:200]:
            if isinstance(bot, dict) and str(bot.get("id", "")).isdigit():
                page = bot.get("page") if isinstance(bot.get("page"), str) else site
                found.setdefault(str(bot["id"]), Bot(
                    str(bot["id"]), one_line(str(bot.get("label") or ""), 120),
                    one_line(str(bot.get("provider") or ""), 60),
                    page if is_http_url(page) else site, bot.get("image_upload") is True,
                ))  # fmt: skip
    elif seed:
        for bot_id, label in SEED_BOTS:
            found.setdefault(bot_id, Bot(bot_id, label, "", site, bot_id in SEED_IMAGE_BOTS))
    seed_slugs = {bot_id: slugify(label) for bot_id, label in SEED_BOTS} if seed else {}
    wanted = [(bot.id, slugify(bot.label) or f"bot-{bot.id}") for bot in found.values()]
    slugs = unique_slugs(wanted, set(taken))
    used = set(slugs.values()) | set(taken)
    bots = []
    for bot in found.values():
        alias = seed_slugs.get(bot.id)
        aliases = (alias,) if alias not in (None, slugs[bot.id]) and alias not in used else ()
        used.update(aliases)
        bots.append(replace(bot, slug=slugs[bot.id], aliases=aliases))
    return bots


def unique_slugs(wanted: list[tuple[str, str]], taken: set[str]) -> dict[str, str]:
    """A slug per bot id, from the slug each wants: unique, outside ``taken``, and the
    same for the same bots in any order."""
    order = sorted(wanted, key=lambda pair: (int(pair[0]) if pair[0].isdigit() else 0, pair[0]))
    slugs: dict[str, str] = {}
    used, wished = set(taken), {slug for _, slug in wanted}
    for bot_id, slug in order:  # first, each label's slug to its lowest id
        if slug not in used:
            slugs[bot_id] = slug
            used.add(slug)
    for bot_id, slug in order:
        if bot_id not in slugs:
            candidate = f"{slug}-{bot_id}"
            while candidate in used or candidate in wished:
                candidate += f"-{bot_id}"
            slugs[bot_id] = candidate
            used.add(candidate)
    return slugs


def save_site_bots(site: str, boxes: list[ChatBox]) -> None:
    """Remember the bots a page showed, for the models ``register_models`` offers."""
    entry = {
        "fetched_at": time.time(),
        "generation": boxes[0].generation if boxes else None,
        "release": boxes[0].release if boxes else None,
        "bots": [
            {
                "id": b.bot_id,
                "label": b.label,
                "provider": b.provider,
                "page": b.page,
                "image_upload": b.image_upload is True,
                "web_search": bool(b.web_search or b.google_grounding),
            }
            for b in boxes
            if b.protocol.has_bots
        ],
    }
    BOTS_FILE.update(lambda sites: sites.update({site: entry}))


def slugify(label: str) -> str:
    """A model id part from a bot's label: "GPT-5 Nano" -> "gpt-5-nano"."""
    slug = re.sub(r"[^a-z0-9.]+", "-", label.lower()).strip("-.")
    return slug[:60].strip("-.")


# -- cookies, per host ------------------------------------------------------------------------

COOKIES_FORMAT = 1
TERMINAL_LINE = 4096  # bytes a terminal's line editor keeps, its newline included
_COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,200}")


def parse_cookie_header(value: str) -> dict[str, str]:
    """A browser's ``Cookie`` header (``a=1; b=2``, ``Cookie:`` in front or not) as a dict;
    a bare value is taken as ``cf_clearance``. ``ValueError`` names, never shows, a value
    that a Cookie header cannot carry."""
    value = re.sub(r"^\s*cookie\s*:", "", value.strip(), flags=re.IGNORECASE).strip()
    if not value:
        return {}
    if "=" not in value:
        value = f"cf_clearance={value}"
    cookies = {}
    for pair in value.split(";"):
        name, sep, content = pair.strip().partition("=")
        if not pair.strip():
            continue
        name, content = name.strip(), content.strip()
        if not sep or not _COOKIE_NAME.fullmatch(name):
            raise ValueError(f"{one_line(name, 40)!r} is not a cookie name")
        if any(ord(c) < 0x21 or ord(c) > 0x7E or c in '";,\\' for c in content):
            raise ValueError(f"the value of {name} holds a character a Cookie header cannot carry")
        cookies[name] = content
    return cookies


@dataclass
class SavedCookies:
    """What cookies.json holds: the cookies per host, and per host the clearance of the
    browser that earned them, as in the file (files from before it have none)."""

    hosts: dict[str, dict[str, str]]
    entries: dict[str, Any]

    def clearances(self) -> dict[str, Clearance]:
        """Each host's clearance, checked: a ``StorageError`` for one that cannot be used."""
        return {host: clearance_of(host, entry) for host, entry in self.entries.items()}


def cookies_of(data: Any) -> SavedCookies:
    """The saved cookies of a cookie file's JSON, each checked as ``cookies set`` checks
    them: a hand-edited file must not inject headers."""
    path = COOKIES_FILE.path
    if data is None:
        return SavedCookies({}, {})
    hosts = data.get("hosts") if isinstance(data, dict) else None
    if not isinstance(hosts, dict) or data.get("format") != COOKIES_FORMAT:
        raise StorageError(f"{path} is not a cookies file of this plugin: fix or remove it.")
    checked = {}
    for host, cookies in hosts.items():
        if not isinstance(cookies, dict):
            raise StorageError(f"{path}: the entry {one_line(host, 60)!r} is not a set of cookies.")
        header = "; ".join(f"{name}={value}" for name, value in cookies.items())
        try:
            checked[host] = parse_cookie_header(header) if cookies else {}
        except ValueError as error:
            raise StorageError(f"{path}: for {one_line(host, 60)}, {error}: fix it.") from None
        if set(checked[host]) != {str(name) for name in cookies}:
            raise StorageError(f"{path}: for {one_line(host, 60)}, a cookie name is not valid.")
    entries = data.get("clearances")
    return SavedCookies(checked, entries if isinstance(entries, dict) else {})


def cookies_data(saved: SavedCookies) -> Any:
    data: dict[str, Any] = {"format": COOKIES_FORMAT, "hosts": dict(sorted(saved.hosts.items()))}
    if saved.entries:
        data["clearances"] = dict(sorted(saved.entries.items()))
    return data


COOKIES_FILE = StateFile("cookies.json", cookies_of, cookies_data)


def update_cookies(
    change: Callable[[dict[str, dict[str, str]]], R],
    clearance: tuple[str, Clearance] | None = None,
) -> R:
    """Change the saved cookies; a host's clearance is kept while its cookies stay as they
    were (and none when one cannot be used), and ``clearance`` is added."""

    def edit(saved: SavedCookies) -> R:
        before = {host: dict(cookies) for host, cookies in saved.hosts.items()}
        result = change(saved.hosts)
        kept: dict[str, Clearance] = {}
        with contextlib.suppress(StorageError):
            kept = {
                host: found
                for host, found in saved.clearances().items()
                if host in saved.hosts and saved.hosts[host] == before.get(host)
            }
        if clearance is not None:
            kept[clearance[0]] = clearance[1]
        saved.entries = {host: asdict(found) for host, found in kept.items()}
        return result

    return COOKIES_FILE.update(edit)


def cookie_host(text: str) -> str:
    """The key cookies are saved under, from a host (``example.org``, ``127.0.0.1:8088``)
    or URL: the host, sent over https only; ``http://host`` for cookies the user saved
    for an ``http://`` URL on purpose, sent over plain http too."""
    text = text.strip().lower()
    parts = split_url(text if "://" in text else f"https://{text}")
    if parts is None or not parts.hostname or parts.path not in ("", "/") or "@" in parts.netloc:
        raise ValueError(f"{text!r} is not a host name")
    return saved_cookie_key(f"{parts.scheme}://{parts.netloc}")


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: what never leaves this machine."""
    host = (host or "").strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def in_clear(url: str) -> bool:
    """True when a request to ``url`` would travel in clear: plain http off this machine."""
    parts = split_url(url)
    return parts is None or (parts.scheme != "https" and not is_loopback(parts.hostname))


def saved_cookie_key(url: str) -> str:
    """Where cookies for ``url`` are kept: under its host, or ``http://host`` when the
    URL is plain http off this machine (the user chose to send them in clear)."""
    netloc = host_of(url).lower()
    return f"http://{netloc}" if in_clear(url) else netloc


def cookie_keys(url: str) -> list[str]:
    """The keys whose cookies may go with a request to ``url``, weakest first: a host's
    cookies go over https (or to this machine) only; ``http://host`` ones over http too."""
    parts = split_url(url)
    if parts is None or not parts.hostname:
        return []
    netloc = parts.netloc.rpartition("@")[2].lower()
    hosts = list(dict.fromkeys((parts.hostname, netloc)))
    in_http = [f"http://{host}" for host in hosts]
    return in_http if in_clear(url) else hosts + in_http


class CookieJar:
    """Cookies per host: the user's, and those each host set during this process. A
    request gets only the cookies of its own host, so nothing crosses sites, even through
    a redirect. ``CHATGPTFREE_COOKIES`` (or ``llm keys set chatgptfree``) is for the
    default site alone."""

    _set_by_sites: dict[str, dict[str, str]] = {}
    _guard = threading.Lock()

    def __init__(
        self, saved: dict[str, dict[str, str]], clearances: dict[str, Clearance] | None = None
    ) -> None:
        self.saved = saved
        self.clearances = clearances or {}

    @classmethod
    def for_prompt(cls) -> CookieJar:
        found = COOKIES_FILE.load()  # once: the cookies and who earned them
        clearances = found.clearances()
        saved = {
            host: clearances[host].unexpired(cookies) if host in clearances else cookies
            for host, cookies in found.hosts.items()
        }
        legacy = llm.get_key(alias=COOKIES_KEY, env=COOKIES_ENV)
        if legacy:
            host = saved_cookie_key(default_site())
            try:
                saved[host] = parse_cookie_header(legacy) | saved.get(host, {})
            except ValueError as error:
                raise ChatgptFreeError(
                    f"The cookies in {COOKIES_ENV} (or 'llm keys set {COOKIES_KEY}'): {error}."
                ) from None
        return cls(saved, clearances)

    def user_agent_for(self, url: str) -> str | None:
        """The User-Agent of the browser that earned the cookies of ``url``'s host."""
        parts = split_url(url)
        if parts is None or not parts.hostname:
            return None
        netloc = parts.netloc.rpartition("@")[2].lower()
        clearance = self.clearances.get(netloc) or self.clearances.get(parts.hostname)
        return clearance.user_agent if clearance else None

    def header_for(self, url: str) -> str | None:
        """The Cookie header for ``url``: its host's cookies, the user's over the site's."""
        keys = cookie_keys(url)
        cookies = {}
        for key in keys:
            cookies |= self._set_by_sites.get(key, {})
        for key in keys:
            cookies |= self.saved.get(key, {})
        return "; ".join(f"{k}={v}" for k, v in cookies.items()) or None

    def remember(self, reply: Reply) -> None:
        """Keep what the reply's host set (name and value only), for that host only."""
        if not reply.set_cookies:
            return
        netloc = saved_cookie_key(reply.url)  # what came in clear may go back in clear
        with self._guard:
            jar = self._set_by_sites.setdefault(netloc, {})
            for header in reply.set_cookies:
                name, _, rest = header.partition("=")
                value = rest.partition(";")[0].strip()
                printable = len(value) < 4096 and all(0x21 <= ord(c) <= 0x7E for c in value)
                if _COOKIE_NAME.fullmatch(name.strip()) and printable and len(jar) < 50:
                    jar[name.strip()] = value

    def hosts(self) -> list[str]:
        """The hosts (with port) the user saved cookies for, in any scheme."""
        return [key.removeprefix("http://") for key, cookies in self.saved.items() if cookies]


# -- secrets: never in a message ------------------------------------------------------------


@dataclass(frozen=True)
class Secrets:
    """Cookie values and proxy passwords, in every form a message could show them in."""

    forms: tuple[str, ...]

    @classmethod
    def of(cls, cookies: CookieJar, settings: TransportSettings) -> Secrets:
        forms: set[str] = set()
        saved = [value for found in cookies.saved.values() for value in found.values()]
        for secret in [*saved, *settings.passwords()]:
            if len(secret) >= 4:
                forms |= secret_forms(secret)
        return cls(tuple(sorted(forms, key=len, reverse=True)))

    def redact(self, text: str) -> str:
        for form in self.forms:
            text = text.replace(form, "***")
        return text


def secret_forms(secret: str) -> set[str]:
    """``secret`` as typed, escaped by repr or JSON, URL-quoted and HTML-escaped."""
    forms = {
        secret,
        repr(secret)[1:-1],
        json.dumps(secret)[1:-1],
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
        html.escape(secret),
    }
    return {form for form in forms if len(form) >= 4}


# ---------------------------------------------------------------------------------------
# Clearance: a real browser passes the site's check
# ---------------------------------------------------------------------------------------
# `llm chatgptfree clearance` starts the user's own Chromium-family browser with a fresh
# profile, drives it over the DevTools protocol (a websocket, the [clearance] extra), waits
# until the page shows a chat box, and keeps that host's cookies and the browser's exact
# User-Agent: a cf_clearance works only with the browser that earned it.

BROWSER_ENV = "CHATGPTFREE_BROWSER"
AUTO_CLEARANCE_ENV = "CHATGPTFREE_AUTO_CLEARANCE"
CLEARANCE_SECONDS = 120.0  # how long the command waits for the chat box by default
AUTO_CLEARANCE_SECONDS = 60.0  # the same, when a prompt runs the clearance itself
BROWSER_START_SECONDS = 30.0  # for the browser to open its DevTools port
BROWSER_EXIT_SECONDS = 5.0  # for the browser to exit once asked, before it is killed
CDP_SECONDS = 10.0  # for one DevTools command's answer
POLL_SECONDS = 0.25
INSTALL_EXTRA = "llm install 'llm-chatgptfree[clearance]'"
INSTALL_BROWSER = (
    "install Chrome, Chromium, Edge or Brave (e.g. 'apt-get install chromium'), or name "
    f"one with --browser or {BROWSER_ENV}"
)
BROWSER_NAMES = (
    "google-chrome",
    "google-chrome-stable",
    "chromium",
    "chromium-browser",
    "microsoft-edge",
    "microsoft-edge-stable",
    "brave-browser",
    "brave",
    "chrome",
    "msedge",
)
BROWSER_PATHS = (
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
    "/Applications/Microsoft Edge.app/Contents/MacOS/Microsoft Edge",
    "/Applications/Brave Browser.app/Contents/MacOS/Brave Browser",
    r"C:\Program Files\Google\Chrome\Application\chrome.exe",
    r"C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe",
)
BROWSER_FLAGS = (
    "--remote-debugging-port=0",  # the browser picks a port, written to DevToolsActivePort
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-breakpad",  # no crash reporter writing to the user's own profile folder
    "--password-store=basic",
    "--use-mock-keychain",
)
# What the page is, read in one evaluation: the chat box's markup only when there is one.
PAGE_STATE_JS = """(() => {
  const box = document.querySelector(
    ".wpaicg-chat-shortcode, .wpaicg-chatbox, [data-config]");
  return JSON.stringify({title: document.title, href: location.href,
    ready: document.readyState, html: box ? document.documentElement.outerHTML : ""});
})()"""


class ClearanceFailed(ChatgptFreeError):
    """The browser did not earn a clearance: one sentence, the browser closed."""


class CloudflareChallenge(ChatgptFreeError):
    """A Cloudflare challenge stood between a prompt and ``host``."""

    def __init__(self, message: str, host: str, status: str = "") -> None:
        super().__init__(message)
        self.host, self.status = host, status


@dataclass(frozen=True)
class Clearance:
    """What a browser left with a host's cookies: who earned them and until when."""

    user_agent: str
    browser: str  # e.g. "Chromium 156"
    saved_at: float
    expires: dict[str, float] = field(default_factory=dict)  # cookie name → Unix time

    def until(self) -> float | None:
        """When the clearance ends: its cf_clearance's expiry, else its first cookie's."""
        if "cf_clearance" in self.expires:
            return self.expires["cf_clearance"]
        return min(self.expires.values(), default=None)

    def expired(self) -> bool:
        until = self.until()
        return until is not None and until <= time.time()

    def unexpired(self, cookies: dict[str, str]) -> dict[str, str]:
        """``cookies`` without those whose stored expiry has passed."""
        now = time.time()
        return {n: v for n, v in cookies.items() if self.expires.get(n, float("inf")) > now}


def is_header_safe(text: str) -> bool:
    """True for printable ASCII a header can carry (no CR, LF or other control)."""
    return 0 < len(text) <= 1024 and all(0x20 <= ord(c) <= 0x7E for c in text)


def clearance_of(host: str, entry: Any) -> Clearance:
    """A clearance entry of cookies.json, checked (a hand-edited file must not inject)."""
    where = f"{COOKIES_FILE.path}: the clearance of {one_line(host, 60)}"
    if not isinstance(entry, dict):
        raise StorageError(f"{where} is not an object: fix or remove it.")
    user_agent, browser = entry.get("user_agent"), entry.get("browser", "")
    expires, saved_at = entry.get("expires", {}), entry.get("saved_at", 0)
    if not isinstance(user_agent, str) or not is_header_safe(user_agent):
        raise StorageError(f"{where} has no usable user_agent: fix or remove it.")
    if not isinstance(browser, str) or not isinstance(saved_at, int | float):
        raise StorageError(f"{where} is not valid: fix or remove it.")
    if not isinstance(expires, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in expires.values()
    ):
        raise StorageError(f"{where} has expiry times that are not numbers: fix them.")
    times = {str(name): float(value) for name, value in expires.items()}
    return Clearance(user_agent, one_line(browser, 60), float(saved_at), times)


def utc_time(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(moment))


def describe_clearance(clearance: Clearance) -> str:
    """``cookies list``'s words for a clearance: who earned it, until when."""
    until = clearance.until()
    by = f"by {clearance.browser or 'a browser'}"
    if until is None:
        return f"clearance {by}, no expiry"
    return f"clearance {by}, {'expired' if clearance.expired() else 'until'} {utc_time(until)}"


def clearance_news(clearance: Clearance | None) -> str:
    """For a challenge's sentence: what became of a host's stored clearance."""
    if clearance is None:
        return ""
    until = clearance.until()
    if clearance.expired() and until is not None:
        return f"; its stored clearance expired {utc_time(until)}"
    return "; its stored clearance no longer passes"


# -- finding and starting the browser ------------------------------------------------------


def find_browser(chosen: str | None) -> str:
    """The browser to start: ``chosen`` (``--browser``), ``$CHATGPTFREE_BROWSER``, or the
    first Chrome, Chromium, Edge or Brave on PATH or in its usual place."""
    import shutil

    named = chosen or os.environ.get(BROWSER_ENV, "").strip()
    if named:
        found = shutil.which(named) or (named if os.path.isfile(named) else None)
        if found is None or not os.access(found, os.X_OK):
            raise ClearanceFailed(f"No browser at {named!r}: {INSTALL_BROWSER}.")
        return found
    for name in (*BROWSER_NAMES, *BROWSER_PATHS):
        found = shutil.which(name)  # a path as it is, when it can be run
        if found:
            return found
    raise ClearanceFailed(f"No Chromium-family browser found: {INSTALL_BROWSER}.")


def browser_name(path: str) -> str:
    """Chrome, Chromium, Edge or Brave, from the browser's file name."""
    lowered = os.path.basename(path).lower()
    for word, name in (("chromium", "Chromium"), ("edge", "Edge"), ("brave", "Brave")):
        if word in lowered:
            return name
    return "Chrome"


def browser_command(path: str, profile: str, headless: bool) -> list[str]:
    command = [path, f"--user-data-dir={profile}", *BROWSER_FLAGS]
    if headless:
        command.append("--headless=new")
    if my_uid() == 0:
        command.append("--no-sandbox")  # Chromium refuses to start as root otherwise
    return [*command, "about:blank"]


def needs_display(headless: bool) -> bool:
    """True when a window is wanted on a Linux machine without a display."""
    on_linux = os.uname().sysname == "Linux" if hasattr(os, "uname") else False
    has_display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    return not headless and on_linux and not has_display


class CdpError(Exception):
    """A DevTools command failed (the page may be navigating): its message."""


class Browser:
    """A browser process with a throw-away profile, driven over one DevTools websocket.

    Use it as a context manager: leaving it closes the browser (asked, then killed with
    its whole process group), reaps it and deletes the profile, whatever happened.
    """

    def __init__(self, path: str, headless: bool) -> None:
        self.path = path
        self.name = browser_name(path)
        self.headless = headless
        self.profile = tempfile.mkdtemp(prefix="llm-chatgptfree-browser-")
        self.process: Any = None
        self.socket: Any = None
        self.connection = contextlib.ExitStack()  # the websocket, as its library wants it
        self.session: str | None = None
        self.ids = 0

    def __enter__(self) -> Browser:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        import subprocess

        try:
            self.process = subprocess.Popen(
                browser_command(self.path, self.profile, self.headless),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: Ctrl-C is ours to handle
            )
        except OSError as error:
            detail = error.strerror or type(error).__name__
            raise ClearanceFailed(sentence(f"Could not start {self.path}: {detail}")) from None
        self.connect(self.devtools_address())

    def devtools_address(self) -> str:
        """The browser's DevTools websocket path, once it has written it."""
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + BROWSER_START_SECONDS
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                hint = " (there is no display here: pass --headless)"
                raise ClearanceFailed(
                    f"{self.name} ({self.path}) exited with code {code} before it could be "
                    f"driven{hint if needs_display(self.headless) else ''}."
                )
            with contextlib.suppress(OSError):
                lines = port_file.read_text().split()
                if len(lines) >= 2 and lines[0].isdigit():
                    return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            time.sleep(0.05)
        raise ClearanceFailed(
            f"{self.name} did not open its DevTools port within {BROWSER_START_SECONDS:g} s."
        )

    def connect(self, address: str) -> None:
        import socket

        from websockets.sync.client import connect

        port = int(urllib.parse.urlsplit(address).port or 0)
        raw = socket.create_connection(("127.0.0.1", port), timeout=CDP_SECONDS)
        try:  # our own socket: no proxy from the environment comes between
            websocket = connect(address, sock=raw, max_size=PAGE_LIMIT * 2, open_timeout=10)
        except BaseException:
            raw.close()
            raise
        self.socket = self.connection.enter_context(websocket)
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next((t for t in targets if t.get("type") == "page"), None)
        if page is None:
            page = {"targetId": self.call("Target.createTarget", url="about:blank")["targetId"]}
        attached = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)
        self.session = attached["sessionId"]

    def call(self, method: str, timeout: float = CDP_SECONDS, **params: Any) -> dict:
        """Send one command (to the page once attached) and wait for its answer."""
        from websockets.exceptions import ConnectionClosed

        self.ids += 1
        message: dict[str, Any] = {"id": self.ids, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        deadline = time.monotonic() + timeout
        try:
            self.socket.send(json.dumps(message))
            while (left := deadline - time.monotonic()) > 0:
                answer = parse_json(self.socket.recv(timeout=left))
                if isinstance(answer, dict) and answer.get("id") == self.ids:
                    return self.result(answer)
                if isinstance(answer, dict) and answer.get("method") == "Target.detachedFromTarget":
                    raise ClearanceFailed(f"The {self.name} window was closed: nothing saved.")
        except TimeoutError:
            pass
        except ConnectionClosed:
            raise self.gone() from None
        raise CdpError(f"{method} got no answer within {timeout:g} s")

    @staticmethod
    def result(answer: dict) -> dict:
        if "error" in answer:
            raise CdpError(one_line(str(answer["error"].get("message", "error")), 120))
        return answer.get("result") or {}

    def gone(self) -> ClearanceFailed:
        """The websocket closed: the browser exited or crashed."""
        code = None
        with contextlib.suppress(Exception):
            code = self.process.wait(timeout=2)
        how = f" (exit code {code})" if code is not None else ""
        return ClearanceFailed(
            f"{self.name} closed before the check was passed{how}: nothing saved."
        )

    def close(self) -> None:
        """Ask the browser to quit, kill its process group if it does not, delete the profile."""
        import shutil
        import signal
        import subprocess

        if self.socket is not None:
            with contextlib.suppress(Exception):
                self.socket.send(json.dumps({"id": 0, "method": "Browser.close"}))
            with contextlib.suppress(Exception):
                self.connection.close()
            self.socket = None
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=BROWSER_EXIT_SECONDS)
            if hasattr(os, "killpg"):  # and its helpers and renderers, all of its group
                with contextlib.suppress(OSError):
                    os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                self.process.kill()
            self.process.wait()
            self.process = None
        shutil.rmtree(self.profile, ignore_errors=True)


# -- waiting for the chat box ---------------------------------------------------------------


@dataclass(frozen=True)
class Earned:
    """What a browser left the page with: the host's cookies, its User-Agent, its name."""

    url: str
    cookies: list[dict]
    user_agent: str
    browser: str


def earn_clearance(url: str, browser_path: str, headless: bool, timeout: float) -> Earned:
    """Open ``url`` in the browser, wait (up to ``timeout`` s) for a chat box on a page
    that is no challenge, and take the page's cookies and the browser's User-Agent."""
    with Browser(browser_path, headless) as browser:
        version = browser.call("Browser.getVersion")
        user_agent = str(version.get("userAgent", ""))
        if "HeadlessChrome/" in user_agent:  # what a visitor's browser would say
            user_agent = user_agent.replace("HeadlessChrome/", "Chrome/")
            browser.call("Network.setUserAgentOverride", userAgent=user_agent)
        navigated = browser.call("Page.navigate", url=url, timeout=max(timeout, CDP_SECONDS))
        if navigated.get("errorText"):
            raise ClearanceFailed(
                sentence(f"{browser.name} could not open {url}: {navigated['errorText']}")
            )
        wait_for_chat_box(browser, url, timeout)
        cookies = browser.call("Network.getCookies", urls=[url]).get("cookies", [])
        agent = browser.call("Runtime.evaluate", expression="navigator.userAgent")
        user_agent = str(agent.get("result", {}).get("value") or user_agent)
        major = str(version.get("product", "")).partition("/")[2].partition(".")[0]
        label = f"{browser.name} {major}".strip()
        return Earned(url, cookies, user_agent, label)


def wait_for_chat_box(browser: Browser, url: str, timeout: float) -> None:
    """Poll the page until it is no challenge and shows a chat box; else one sentence."""
    deadline = time.monotonic() + timeout
    state: dict = {}
    while time.monotonic() < deadline:
        left = max(0.5, min(CDP_SECONDS, deadline - time.monotonic()))
        try:
            answer = browser.call("Runtime.evaluate", left, expression=PAGE_STATE_JS)
            state = parse_json(str(answer.get("result", {}).get("value", ""))) or state
        except CdpError:
            state = {}  # navigating (the challenge reloads the page): ask again
        if page_has_chat_box(state):
            return
        time.sleep(POLL_SECONDS)
    raise ClearanceFailed(not_cleared(url, timeout, state))


def page_has_chat_box(state: dict) -> bool:
    html_text, href = str(state.get("html", "")), str(state.get("href", ""))
    if not html_text or state.get("title") == "Just a moment..." or not is_http_url(href):
        return False
    return bool(read_chat_boxes(html_text[:PAGE_LIMIT], href))


def not_cleared(url: str, timeout: float, state: dict) -> str:
    title = str(state.get("title", ""))
    if title == "Just a moment..." or not state:
        return (
            f"The check on {host_of(url)} was not passed within {timeout:g} s: nothing saved. "
            "Try again without --headless and pass it in the browser window, or wait longer "
            "with --timeout."
        )
    shown = f" (it shows {one_line(title, 60)!r})" if title else ""
    return f"No AI Power chat box appeared on {url} within {timeout:g} s{shown}: nothing saved."


# -- keeping what was earned -------------------------------------------------------------------


def carried_cookies(cookies: list[dict]) -> dict[str, tuple[str, float | None]]:
    """The browser's cookies a Cookie header can carry: name → (value, expiry or None)."""
    kept: dict[str, tuple[str, float | None]] = {}
    for cookie in cookies:
        name, value = str(cookie.get("name", "")), str(cookie.get("value", ""))
        try:
            if parse_cookie_header(f"{name}={value}") != {name: value}:
                continue
        except ValueError:
            continue
        expires = cookie.get("expires")
        session = cookie.get("session") or not isinstance(expires, int | float) or expires <= 0
        kept[name] = (value, None if session else float(expires))
    return kept


def store_clearance(earned: Earned) -> str:
    """Keep the host's cookies and the browser's User-Agent; what was kept, in words."""
    host = cookie_host(origin_of(earned.url))
    kept = carried_cookies(earned.cookies)
    if not kept:
        raise ClearanceFailed(f"The browser got no cookie from {host}: nothing saved.")
    cookies = {name: value for name, (value, _) in sorted(kept.items())}
    expires = {name: until for name, (_, until) in kept.items() if until is not None}
    clearance = Clearance(earned.user_agent, earned.browser, time.time(), expires)
    update_cookies(lambda hosts: hosts.__setitem__(host, cookies), (host, clearance))
    until = ""
    if "cf_clearance" in expires:
        until = f" (cf_clearance until {utc_time(expires['cf_clearance'])})"
    saved = f"Saved {counted(len(cookies), 'cookie')} for {host}{until}"
    return f"{saved} and the User-Agent of {earned.browser}"


def clearance_page(target: str | None) -> str:
    """The page to open: a URL as given; a saved site's page by its name; for a host, its
    saved site's or the default site's page, else its home page."""
    if not target:
        return default_site()
    if "://" in target:
        return checked_site_url(target)
    sites = SITES_FILE.load()
    if target in sites:
        return sites[target].url
    host = cookie_host(target)
    pages = [default_site(), *(site.url for site in sites.values())]
    for page in pages:
        if host_of(page).lower() == host:
            return page
    local = is_loopback(split_url(f"http://{host}").hostname)
    return checked_site_url(f"{'http' if local else 'https'}://{host}/")


def run_clearance(
    url: str, headless: bool, timeout: float, browser: str | None, say: Callable[[str], None]
) -> str:
    """The whole clearance of ``url``; what was saved, in words. Every failure (Ctrl-C
    included) is a ``ClearanceFailed`` sentence, with the browser gone."""
    if not module_available("websockets"):  # the [clearance] extra
        raise ClearanceFailed(f"The clearance needs a DevTools client: {INSTALL_EXTRA}.")
    path = find_browser(browser)
    if needs_display(headless):
        raise ClearanceFailed("There is no display for a browser window here: pass --headless.")
    host = host_of(url)
    if headless:
        say(f"Waiting up to {timeout:g} s for the chat box on {host} (headless {path})")
    else:
        say(
            f"Waiting up to {timeout:g} s for the chat box on {host}; pass the check in the "
            "browser window if it asks you to"
        )
    try:
        earned = earn_clearance(url, path, headless, timeout)
    except KeyboardInterrupt:
        raise ClearanceFailed("Interrupted: the browser is closed and nothing was saved.") from None
    except CdpError as error:
        raise ClearanceFailed(sentence(f"Driving the browser failed: {error}")) from None
    except OSError as error:
        detail = error.strerror or str(error) or type(error).__name__
        raise ClearanceFailed(sentence(f"Talking to the browser failed: {detail}")) from None
    return store_clearance(earned)


def auto_clearance_wanted() -> bool:
    return os.environ.get(AUTO_CLEARANCE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def auto_clearance(site: str) -> None:
    """A prompt met a challenge: one headless clearance of its page, bounded, or why not."""
    try:
        run_clearance(site, True, AUTO_CLEARANCE_SECONDS, None, lambda text: None)
    except ClearanceFailed as error:
        raise ChatgptFreeError(
            f"{host_of(site)} answered with a Cloudflare challenge, and the automatic "
            f"clearance ({AUTO_CLEARANCE_ENV}) failed: {error}"
        ) from None


# ---------------------------------------------------------------------------------------
# The commands: llm chatgptfree …
# ---------------------------------------------------------------------------------------


class PageVisit(Visit):
    """Read a page's chat boxes, past any page cache: for ``refresh`` and ``sites add``."""

    boxes: list[ChatBox]

    def steps(self) -> Steps:
        yield from self.read_files()
        page = yield from self.fetch_page(bust=True)
        self.boxes = self.chat_boxes(page)


class Probe(Visit):
    """``llm chatgptfree probe``: what a user needs to know about a site, step by step,
    through the same transport, cookies and proxy as a prompt."""

    def __init__(self, url: str, bot: str | None, timeout: float) -> None:
        super().__init__(url, timeout, TransportSettings.of(None, None), bot)
        self.lines: list[tuple[str, str]] = []
        self.boxes: list[ChatBox] = []
        self.ready = False

    def note(self, label: str, text: str) -> None:
        self.lines.append((printable(label), printable(self.secrets.redact(text))))

    def steps(self) -> Steps:
        yield from self.read_files()
        started = time.monotonic()
        try:
            page = yield from self.fetch_page(bust=True)
        except ChatgptFreeError as error:
            return self.note("Page", f"{public_url(self.site)} unreachable: {error}")
        took = time.monotonic() - started
        self.note("Page", f"{page.url}: HTTP {page.status} in {took:.2f} s")
        if is_cloudflare_challenge(page.reply, page.text):
            return self.note("Blocked", "a Cloudflare challenge: see 'llm chatgptfree cookies'")
        self.boxes = read_chat_boxes(page.text, page.url)
        if not self.boxes:
            return self.note("Chat box", "none with a nonce on this page")
        first = self.boxes[0]
        release = f"AI Power {first.release}" if first.release else "AI Power, release not shown"
        refresh = ", nonce refresh available" if first.can_refresh_nonce else ""
        self.note("Plugin", f"{release}; chat generation {first.generation}{refresh}")
        for box in self.boxes[:MAX_PROBE_BOTS]:
            self.note(f"Bot {box.bot_id}", box.protocol.describe(box))
        if len(self.boxes) > MAX_PROBE_BOTS:
            more = len(self.boxes) - MAX_PROBE_BOTS
            self.note(
                "More",
                f"{counted(more, 'more bot')} not shown ({len(self.boxes)} in "
                "all); check one with --bot ID",
            )
        box = choose_box(self.boxes, self.bot, False)
        if box is None:
            return self.note("Bot", f"no bot {self.bot} on this page")
        yield from self.check_nonce(box)

    def check_nonce(self, box: ChatBox) -> Steps:
        """Send an empty message: the plugin checks the nonce first, then refuses it, so
        this costs no model call. The chat box must pass a prompt's origin rule first."""
        try:
            self.check_endpoint(box, box.page)
        except ChatgptFreeError as error:
            return self.note("Nonce", f"not checked: {error}")
        started = time.monotonic()
        where = f"{self.host}'s admin-ajax"
        try:
            reply = yield from self.post(box, box.protocol.empty_message(box, self.identity), where)
            body = decode_text((yield from self.read_body(SMALL_BODY_LIMIT, where)), reply)
        except ChatgptFreeError as error:
            return self.note("Nonce", f"not checked: {error}")
        took = time.monotonic() - started
        verdict, said = box.protocol.nonce_verdict(reply, body)
        if verdict == "accepted":
            self.ready = True
            yield Storage(lambda: PAGE_CACHE.put(self.site, box.bot_id, box, self.boxes))
            self.note("Nonce", f"accepted (admin-ajax answered in {took:.2f} s)")
            if said:
                self.note("Site", f"says: {said}")
        else:
            self.note("Nonce", f"{verdict}: {said}")


class Seconds(click.ParamType):
    """A positive, finite number of seconds (at most a week): ``click.FloatRange`` lets NaN
    through, and infinity overflows the clocks."""

    name = "seconds"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not 0 < seconds < float("inf"):  # NaN fails this too
            self.fail(f"{value!r} is not a positive number of seconds", param, ctx)
        return min(seconds, MAX_TIMEOUT)


def perform(visit: Visit) -> None:
    """Run a visit to its end; a failure is one click error line, without secrets."""
    try:
        for _ in run_blocking(visit):
            pass
    except ChatgptFreeError as error:
        raise click.ClickException(visit.secrets.redact(str(error))) from None


def counted(number: int, noun: str) -> str:
    """``1 page``, ``2 pages``."""
    return f"{number} {noun}{'s' if number != 1 else ''}"


def url_argument(url: str) -> str:
    try:
        return checked_site_url(url)
    except ValueError as error:
        shown = re.sub(r"(?<=//)[^/?#]*@", "***@", url)  # never repeat a password
        raise click.BadParameter(f"{shown!r}: {error}", param_hint="URL") from None


def host_argument(host: str) -> str:
    try:
        return cookie_host(host)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="HOST") from None


def site_url_for(name: str) -> str:
    """The page of a saved site, of the built-in model (``chatgptfree``), or a URL."""
    if name in ("chatgptfree", MODEL_ID):
        return default_site()
    if "://" in name:
        return url_argument(name)
    sites = SITES_FILE.load()
    if name not in sites:
        raise click.ClickException(unknown_site(name, sites))
    return sites[name].url


def unknown_site(name: str, sites: dict[str, SavedSite]) -> str:
    known = ", ".join(sites) or "none yet"
    return f"No saved site named {name!r} (saved: {known})."


def read_bots(url: str, timeout: float) -> list[ChatBox]:
    """A page's chat boxes, now remembered as the site's bots."""
    visit = PageVisit(url, timeout, TransportSettings.of(None, None))
    perform(visit)
    save_site_bots(url, visit.boxes)  # a StorageError names the file
    return visit.boxes


def show_bots(model_prefix: str, url: str, taken: Iterable[str] = ()) -> None:
    """Say the models of a site's bots, one line each; ``taken``: the saved sites' names,
    which the default site's bots make way for."""
    for bot in site_bots(url, seed=False, taken=taken):
        via = f" via {bot.provider}" if bot.provider else ""
        click.echo(f"  {model_prefix}{bot.slug}: {bot.label or 'no name'}{via}, bot {bot.id}")


@click.group(name="chatgptfree")
def chatgptfree_group() -> None:
    "Sites running the AI Power chat box, as models"


@chatgptfree_group.command(name="refresh", short_help="Read the bots of the sites from their pages")
@click.argument("names", nargs=-1)
@click.option("--timeout", type=Seconds(), default=30.0,
              show_default=True, help="Seconds to wait for each page")  # fmt: skip
def refresh_command(names: tuple[str, ...], timeout: float) -> None:
    """Read the bots of chatgptfree.ai and of the saved sites from their pages

    Each bot becomes a model: chatgptfree/BOT for the default site, chatgptfree/NAME/BOT
    for a saved site. NAMES are saved sites, or chatgptfree for the default site.
    """
    sites = SITES_FILE.load()
    chosen: dict[str, str] = {}  # model prefix → url, of each site to read
    for name in names or ("chatgptfree", *sites):
        if name in ("chatgptfree", MODEL_ID):
            chosen["chatgptfree/"] = default_site()
        if name in sites or name not in ("chatgptfree", MODEL_ID):
            url = sites[name].url if name in sites else site_url_for(name)
            chosen[f"chatgptfree/{name}/"] = url
    failed = False
    for prefix, url in chosen.items():
        try:
            boxes = read_bots(url, timeout)
        except StorageError:
            raise  # the bots file: no other site could be saved either
        except click.ClickException as error:
            click.echo(f"{public_url(url)}: {error.message}", err=True)
            failed = True
            continue
        release = f"AI Power {boxes[0].release}" if boxes[0].release else "AI Power"
        count = sum(box.protocol.has_bots for box in boxes)
        if count:
            click.echo(f"{public_url(url)}: {release}, {counted(count, 'bot')}")
            show_bots(prefix, url, sites if prefix == "chatgptfree/" else ())
        else:
            click.echo(f"{public_url(url)}: {release} (1.x), one chat box: no bot models")
    if failed:
        raise SystemExit(1)


@chatgptfree_group.group(name="sites")
def sites_group() -> None:
    "Saved sites: each is a model chatgptfree/NAME"


@sites_group.command(name="add")
@click.argument("name")
@click.argument("url")
@click.option("--bot", help="Bot id of the chat box to use, when the page has several")
def sites_add(name: str, url: str, bot: str | None) -> None:
    """Save the chat box of the page at URL as the model chatgptfree/NAME

    Its bots are read from the page too: each becomes chatgptfree/NAME/BOT.
    """
    if not SITE_NAME.fullmatch(name):
        raise click.BadParameter(
            "use lower-case letters, digits, '.', '_' or '-'", param_hint="NAME"
        )
    if bot is not None and not bot.isdigit():
        raise click.BadParameter("a bot id is a number", param_hint="--bot")
    clash = name_clash(name)
    if clash:
        raise click.BadParameter(clash, param_hint="NAME")
    site = SavedSite(name, url_argument(url), bot)

    def add(sites: dict[str, SavedSite]) -> None:
        if name in sites:
            raise click.ClickException(
                f"A site named {name!r} exists already ({sites[name].url}); remove it "
                f"first with 'llm chatgptfree sites remove {name}'."
            )
        sites[name] = site

    SITES_FILE.update(add)
    click.echo(f"Saved {site.url} as the model {site.model_id}")
    try:
        boxes = read_bots(site.url, 30.0)
    except StorageError as error:
        raise click.ClickException(f"Its bots were not saved: {error}") from None
    except click.ClickException as error:
        click.echo(
            f"Its bots could not be read now ({error.message}); run 'llm chatgptfree "
            f"refresh {name}' later.",
            err=True,
        )
        return
    if bot is not None and not any(box.bot_id == bot for box in boxes):
        click.echo(f"Warning: the page has no bot {bot} now.", err=True)
    show_bots(f"{site.model_id}/", site.url)


def name_clash(name: str) -> str | None:
    """Why ``chatgptfree/NAME`` cannot be a saved site's model id, or None."""
    if name in ("chatgptfree", MODEL_ID, *ALIASES, *SEED_MODEL_ALIASES):
        return f"{name!r} is a reserved word of this plugin: choose another name"
    default = default_site()
    for found in site_bots(default, seed=is_chatgptfree_ai(default)):
        if name == found.slug or name in found.aliases:
            shown = found.label or f"bot {found.id}"
            return (
                f"chatgptfree/{name} is already the model of {host_of(default)}'s bot {found.id} "
                f"({shown}): choose another name"
            )
    return None


@sites_group.command(name="list")
@click.option("json_", "--json", is_flag=True, help="Output as JSON")
def sites_list(json_: bool) -> None:
    "List the saved sites"
    sites = SITES_FILE.load()
    if json_:
        entries = [
            asdict(site)
            | {
                "model_id": site.model_id,
                "bots": [f"{site.model_id}/{bot.slug}" for bot in site_bots(site.url, False)],
            }
            for site in sites.values()
        ]
        click.echo(json.dumps(entries, indent=2))
        return
    if not sites:
        click.echo("No saved sites. Add one with 'llm chatgptfree sites add NAME URL'.")
    for site in sites.values():
        bot = f" (bot {site.bot})" if site.bot else ""
        click.echo(f"{site.model_id}: {site.url}{bot}")
        show_bots(f"{site.model_id}/", site.url)


@sites_group.command(name="remove")
@click.argument("name")
def sites_remove(name: str) -> None:
    "Forget the saved site NAME"

    def remove(sites: dict[str, SavedSite]) -> SavedSite:
        if name not in sites:
            raise click.ClickException(unknown_site(name, sites))
        return sites.pop(name)

    removed = SITES_FILE.update(remove)
    PAGE_CACHE.forget(removed.url)
    click.echo(f"Removed chatgptfree/{name}")


@chatgptfree_group.group(name="cookies", short_help="Cookies per site, each sent only to its host")
def cookies_group() -> None:
    """Cookies per site, e.g. a Cloudflare clearance: sent only to their own host"""


@cookies_group.command(name="set")
@click.argument("host")
@click.argument("cookies", required=False)
def cookies_set(host: str, cookies: str | None) -> None:
    """Save COOKIES for HOST (a browser's whole Cookie header, or cf_clearance=…)

    Leave COOKIES out to paste them at a hidden prompt, out of your shell's history, or
    give - to read them from stdin (a terminal line holds 4,095 bytes at most: a longer
    header must come on stdin). A bare value is taken as cf_clearance. They are kept for
    the owner only, and sent only to HOST.
    """
    key = host_argument(host)
    if cookies == "-":
        cookies = sys.stdin.read(FILE_LIMIT)
    elif cookies is None:
        cookies = click.prompt("Cookie header", hide_input=True)
        if len(cookies.encode("utf-8", "surrogateescape")) >= TERMINAL_LINE - 1:
            raise click.ClickException(
                f"The header typed is {len(cookies)} characters long, as much as a terminal "
                "line holds: it was probably cut, so nothing was saved. Give it on stdin "
                f"instead: llm chatgptfree cookies set {host} - < header.txt"
            )
    try:
        parsed = parse_cookie_header(cookies)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="COOKIES") from None
    if not parsed:
        raise click.BadParameter("no cookie in it", param_hint="COOKIES")
    update_cookies(lambda hosts: hosts.__setitem__(key, parsed))
    names = ", ".join(parsed)
    click.echo(f"Saved {counted(len(parsed), 'cookie')} for {key}: {names}")


@cookies_group.command(name="list")
def cookies_list() -> None:
    "List the hosts with cookies, and the cookies' names (never their values)"
    saved = COOKIES_FILE.load()
    clearances = saved.clearances()
    if not saved.hosts:
        click.echo("No cookies saved. Add some with 'llm chatgptfree cookies set HOST …'.")
    for host, cookies in saved.hosts.items():
        earned = f" ({describe_clearance(clearances[host])})" if host in clearances else ""
        click.echo(f"{host}: {', '.join(cookies) or '(none)'}{earned}")


@cookies_group.command(name="remove")
@click.argument("host")
def cookies_remove(host: str) -> None:
    "Forget the cookies of HOST"
    key = host_argument(host)

    def remove(hosts: dict[str, dict[str, str]]) -> None:
        if key not in hosts:
            known = ", ".join(hosts) or "none"
            raise click.ClickException(f"No cookies saved for {key} (saved for: {known}).")
        del hosts[key]

    update_cookies(remove)
    click.echo(f"Removed the cookies of {key}")


@chatgptfree_group.command(name="probe", short_help="Check whether a page has a working chat box")
@click.argument("url")
@click.option("--bot", help="Bot id of the chat box to check")
@click.option("--send", is_flag=True, help="Also send one tiny prompt to each bot")
@click.option("--timeout", type=Seconds(), default=30.0,
              show_default=True, help="Seconds")  # fmt: skip
def probe_command(url: str, bot: str | None, send: bool, timeout: float) -> None:
    """Check whether the page at URL has a working AI Power chat box

    Reports the plugin's generation and release, every bot, and whether the nonce is
    accepted (with an empty message, which costs no model call); with --send, whether
    each bot answers. Exits 0 only when the site can answer.
    """
    page = url_argument(url)
    probe = Probe(page, bot, timeout)
    perform(probe)
    if send and probe.ready:
        probe.ready = send_to_bots(probe, timeout)
    width = max(len(label) for label, _ in [*probe.lines, ("Verdict", "")])
    for label, text in probe.lines:
        click.echo(f"{label:<{width}}  {text}")
    verdict = "ready: this site can answer" if probe.ready else "not usable as it is"
    click.echo(f"{'Verdict':<{width}}  {verdict}")
    if not probe.ready:
        raise SystemExit(1)


def send_to_bots(probe: Probe, timeout: float) -> bool:
    """Ask each bot (or the chosen one) "Say OK"; True when any answered."""
    boxes = [b for b in probe.boxes if probe.bot in (None, b.bot_id)][:MAX_PROBE_BOTS]
    answered = False
    for box in boxes if boxes[:1] and boxes[0].protocol.has_bots else boxes[:1]:
        started = time.monotonic()
        bot = box.bot_id if box.protocol.has_bots else probe.bot
        model = ChatgptFree(Target("probe", probe.site, bot, saved_as="probe"))
        try:
            text = model.prompt("Say OK", timeout=timeout).text()
        except llm.ModelError as error:
            probe.note(f"Bot {box.bot_id}", f"failed: {error}")
            continue
        answered = True
        took = time.monotonic() - started
        probe.note(f"Bot {box.bot_id}", f"answered {one_line(text, 60)!r} in {took:.2f} s")
    return answered


@chatgptfree_group.group(name="cache")
def cache_group() -> None:
    "The chat boxes read from pages, kept for ten hours"


@cache_group.command(name="clear")
@click.argument("name", required=False)
def cache_clear(name: str | None) -> None:
    "Forget the chat boxes of every page, or of NAME (a saved site, chatgptfree, or a URL)"
    url = None if name is None else site_url_for(name)
    dropped = PAGE_CACHE.forget(url, strict=True)
    click.echo(f"Forgot the chat boxes of {counted(dropped, 'page')}")


@chatgptfree_group.command(name="clearance", short_help="Pass a site's check in a real browser")
@click.argument("target", metavar="[HOST|URL]", required=False)
@click.option("--headless", is_flag=True, help="No browser window (for machines without a display)")
@click.option("--timeout", type=Seconds(), default=CLEARANCE_SECONDS,
              show_default=True, help="Seconds to wait for the chat box")  # fmt: skip
@click.option("--browser", "browser", metavar="PATH",
              help=f"Chrome, Chromium, Edge or Brave to use (or ${BROWSER_ENV})")  # fmt: skip
def clearance_command(
    target: str | None, headless: bool, timeout: float, browser: str | None
) -> None:
    """Open a page in your browser and keep its cookies and User-Agent

    Starts Chrome, Chromium, Edge or Brave with a fresh profile of its own (never yours,
    deleted afterwards), opens the page (default: chatgptfree.ai's), waits until the site's
    check is passed and the chat box shows, then keeps only that host's cookies and the
    browser's User-Agent for the next prompts, and closes the browser. Pass the check in
    the window if it asks for a click. Needs llm-chatgptfree[clearance].
    """
    try:
        url = clearance_page(target)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="HOST|URL") from None
    say = lambda text: click.echo(text, err=True)  # noqa: E731
    click.echo(run_clearance(url, headless, timeout, browser, say))
