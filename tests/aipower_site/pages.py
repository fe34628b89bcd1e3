"""The site's pages: the captured pages of the release (rewritten to the site's own address
and current nonce, everything else byte for byte), their markup variants, and the page
faults that are about content (huge, ``<``-filled, CDATA, a foreign ajax URL).

2.x chat boxes carry their settings in ``data-config='<JSON>'`` (``protocol-2x.md`` §2.1):
``encode_config`` writes it the way the plugin does and ``configs`` reads it back.
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .challenge import VARIANTS as CHALLENGES
from .faults import Fault
from .hostile import error_page, page_reply
from .http import Reply
from .providers import CAPTURED_NONCE as PROVIDERS_NONCE
from .providers import FOLDER as PROVIDERS

if TYPE_CHECKING:
    from . import AIPowerSite

SAMPLES = Path(__file__).parent.parent / "samples"
CAPTURED_ORIGIN = "127.0.0.1:8088"
CAPTURED_NONCE = {"1.x": "e302406566", "2.x": "e492389ffd"}
MEGABYTE = 1024 * 1024
AS_CAPTURED = ("normal", *CHALLENGES)  # the chat page behind a challenge is the normal one
CONFIG = re.compile(r"""data-config=(['"])(.*?)\1""", re.S)
PHP_HEX = {'\\"': "\\u0022", "<": "\\u003C", ">": "\\u003E", "&": "\\u0026", "'": "\\u0027",
           "/": "\\/"}  # fmt: skip
COLLECTOR = "http://collector.example.net/wp-admin/admin-ajax.php"


def encode_config(config: dict) -> str:
    """``esc_attr(wp_json_encode($config, JSON_UNESCAPED_UNICODE | JSON_HEX_TAG |
    JSON_HEX_APOS | JSON_HEX_AMP | JSON_HEX_QUOT))``."""
    text = json.dumps(config, ensure_ascii=False, separators=(",", ":"))

    def literal(found: re.Match) -> str:
        inner = re.sub(r"""\\.|[<>&'/]""", lambda m: PHP_HEX.get(m[0], m[0]), found[1])
        return f'"{inner}"'

    text = re.sub(r'"((?:[^"\\]|\\.)*)"', literal, text)
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def configs(page: str) -> list[dict]:
    """Every chat box's settings on a 2.x page, in page order."""
    return [json.loads(html.unescape(found[2])) for found in CONFIG.finditer(page)]


def container_blocks(page: str) -> list[tuple[int, int]]:
    """(start, end) of each top-level ``aipkit_chat_container`` element."""
    blocks, index = [], 0
    while (start := page.find('<div class="aipkit_chat_container', index)) >= 0:
        depth, position = 0, start
        for tag in re.finditer(r"<div\b|</div>", page[start:]):
            depth += 1 if tag[0] == "<div" else -1
            if depth == 0:
                position = start + tag.end()
                break
        blocks.append((start, position))
        index = position
    return blocks


def with_config(block: str, edit: Callable[[dict], None]) -> str:
    def replace(found: re.Match) -> str:
        config = json.loads(html.unescape(found[2]))
        edit(config)
        return f"data-config='{encode_config(config)}'"

    return CONFIG.sub(replace, block, count=1)


def as_bot(block: str, bot_id: int, label: str, provider: str, post_id: int) -> str:
    """A copy of a chat box for another bot."""
    old = re.search(r'data-bot-id="(\d+)"', block)[1]
    block = re.sub(rf"(aipkit_[a-z_]*_){old}(?!\d)", rf"\g<1>{bot_id}", block)
    block = block.replace(f'data-bot-id="{old}"', f'data-bot-id="{bot_id}"')
    return with_config(
        block,
        lambda c: c.update(botId=bot_id, headerName=label, provider=provider, postId=post_id),
    )


def as_popup(block: str) -> str:
    """The same bot in popup mode: settings on the wrapper, none on the inner box."""
    bot_id = re.search(r'data-bot-id="(\d+)"', block)[1]
    config = CONFIG.search(block)
    settings = json.loads(html.unescape(config[2]))
    settings["popupEnabled"] = True
    inner = block.replace(config[0], 'aria-hidden="true" inert', 1)
    inner = inner.replace("aipkit_chat_container ", "aipkit_chat_container aipkit_popup_content ")
    return (
        f'<div class="aipkit_popup_wrapper aipkit-popup-bottom-right" '
        f"id=\"aipkit_popup_wrapper_{bot_id}\" data-config='{encode_config(settings)}' "
        f'data-bot-id="{bot_id}" data-icon-size="medium">\n'
        f'<button class="aipkit_popup_trigger" aria-label="Open chat"></button>\n{inner}\n</div>'
    )


@functools.cache
def captured(release: str, name: str) -> str:
    return (SAMPLES / release / name).read_text(encoding="utf-8")


def reply(site: AIPowerSite, path: str, fault: Fault | None) -> Reply:
    """The answer to a page GET."""
    if fault == Fault.LT_PAGE:
        return page_reply(200, b"<" * MEGABYTE)
    if fault == Fault.A_PAGE:
        return page_reply(200, b"<a " * (MEGABYTE // 3))
    name = page_name(site.generation, path.rstrip("/"), site.providers)
    if name is None:
        return page_reply(404, error_page(404, "Not Found").encode())
    text = v1_page(site, name) if site.generation == "1.x" else v2_page(site, name)
    return page_reply(200, with_fault(site, rewrite(site, text), fault).encode())


def page_name(generation: str, path: str, providers: bool = False) -> str | None:
    names = {"": "page-chat.html", "/chat": "page-chat.html", "/bot": "page-bot.html"}
    if generation == "2.x":
        names[""] = "page-home.html"
    if providers:  # chatgptfree.ai: the nine bots on /, Gemini on /chat/, no /bot/
        del names["/bot"]
    return names.get(path)


def rewrite(site: AIPowerSite, text: str) -> str:
    """The captured site's address and nonce become this site's."""
    scheme, address = site.base_url.split("://")
    for old, new in (
        (f"http://{CAPTURED_ORIGIN}", f"{scheme}://{address}"),
        (f"http:\\/\\/{CAPTURED_ORIGIN}", f"{scheme}:\\/\\/{address}"),
        (f"http%3A%2F%2F{CAPTURED_ORIGIN.replace(':', '%3A')}", f"{scheme}%3A%2F%2F"
         + address.replace(":", "%3A")),
        (CAPTURED_ORIGIN, address),
    ):  # fmt: skip
        text = text.replace(old, new)
    nonce = site.page_nonce_override or site.nonce
    captured_nonce = PROVIDERS_NONCE if site.providers else CAPTURED_NONCE[site.generation]
    return text.replace(captured_nonce, nonce)


def with_fault(site: AIPowerSite, text: str, fault: Fault | None) -> str:
    """The page with a content fault inserted where it bites: before the chat box."""
    body = re.search(r"<body[^>]*>", text)
    at = body.end() if body else 0
    if fault == Fault.HUGE_PAGE:
        return text[:at] + filler(20 * MEGABYTE) + text[at:]
    if fault == Fault.CDATA_PAGE:
        return text[:at] + "<![ " + text[at:]
    if fault == Fault.FOREIGN_AJAX_URL and site.generation == "1.x":
        head = re.search(r"<head[^>]*>", text)
        at = head.end() if head else 0
        params = json.dumps({"ajax_url": COLLECTOR, "nonce": site.nonce}).replace("/", "\\/")
        return text[:at] + f"<script>var aiCollectorParams = {params};</script>" + text[at:]
    if fault == Fault.FOREIGN_AJAX_URL:
        blocks = container_blocks(text)
        if blocks:
            start, end = blocks[0]
            foreign = site.foreign_url + "/wp-admin/admin-ajax.php"
            copy = with_config(text[start:end], lambda c: c.update(ajaxUrl=foreign))
            return text[:start] + copy + "\n" + text[start:]
    return text


@functools.cache
def filler(size: int) -> str:
    line = "<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit.</p>\n"
    return line * (size // len(line))


# -- 1.x ----------------------------------------------------------------------------------


def v1_page(site: AIPowerSite, name: str) -> str:
    folder = "1.8.96" if site.release == "2.2" else site.release
    chat = name == "page-chat.html"
    if chat and site.page_variant not in AS_CAPTURED:
        return v1_variant(site)
    text = captured(folder, name)
    if site.release == "2.2":
        text = text.replace("ver=1.8.96", "ver=2.2")
    streams = site.stream if chat else site.bot_stream
    return re.sub(
        r'data-openai_stream_nav="[01]"', f'data-openai_stream_nav="{int(streams)}"', text
    )


def v1_variant(site: AIPowerSite) -> str:
    nonce, base = site.page_nonce_override or site.nonce, f"http://{CAPTURED_ORIGIN}"
    stream = int(site.stream)
    boxes = {
        "no_chatbox": "<p>Just a blog post, no chat here.</p>",
        "minified": (
            f"<div class=wpaicg-chat-shortcode data-nonce={nonce} data-post-id=6 "
            f"data-url={base}/chat data-bot-id=0 data-openai_stream_nav={stream}"
            " data-type=shortcode><div class=wpaicg-chat-shortcode-content></div></div>"
        ),
        "entities": (
            f"<div data-type = 'shortcode' data-bot-id = '0' data-url = "
            f"'{base}/chat?x=1&amp;y=2' class = 'wpaicg-chat-shortcode' "
            f"data-post-id = '6'\n data-nonce = '{nonce}'></div>"
        ),
        "several": (
            f'<div class="wpaicg-chat-shortcode" data-nonce="{nonce}" '
            f'data-post-id="6" data-url="{base}/chat" data-bot-id="4" '
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
        f"{boxes[site.page_variant]}</body></html>"
    )


# -- 2.x ----------------------------------------------------------------------------------


def v2_page(site: AIPowerSite, name: str) -> str:
    variant = site.page_variant
    if site.providers:
        return configured(site, captured(PROVIDERS, name))
    if name == "page-bot.html" or variant in AS_CAPTURED:
        return stream_switches(site, captured(site.release, name))
    if variant == "chatgptfree":
        return chatgptfree(site, name)
    text = captured(site.release, name)
    blocks = container_blocks(text)
    first = text[blocks[0][0] : blocks[0][1]]
    if variant == "no_chatbox":
        new = ""
    elif variant == "popup":
        new = "\n".join(as_popup(text[s:e]) for s, e in blocks)
    elif variant == "double_quoted":
        new = "\n".join(CONFIG.sub(r'data-config="\2"', text[s:e]) for s, e in blocks)
    elif variant == "duplicate_bot":
        new = "\n".join([first, *(text[s:e] for s, e in blocks)])
    else:  # several: one box per bot of the site
        post_id = configs(first)[0]["postId"]
        new = "\n".join(
            as_bot(first, bot_id, bot.label, bot.provider, post_id)
            for bot_id, bot in site.bots.items()
        )
    return stream_switches(site, text[: blocks[0][0]] + new + text[blocks[-1][1] :])


def configured(site: AIPowerSite, text: str) -> str:
    """The page with ``site.bot_config``'s settings merged into those bots' ``data-config``
    (the rest byte for byte)."""
    pieces, last = [], 0
    for start, end in container_blocks(text) if site.bot_config else ():
        block = text[start:end]
        extra = site.bot_config.get(int(re.search(r'data-bot-id="(\d+)"', block)[1]))
        if extra:
            block = with_config(block, lambda config, extra=extra: config.update(extra))
        pieces += [text[last:start], block]
        last = end
    return "".join(pieces) + text[last:]


def stream_switches(site: AIPowerSite, text: str) -> str:
    """2.3's per-bot ``streamEnabled``: the default bot follows ``site.stream``, the others
    ``site.bot_stream``."""
    if site.release != "2.3":
        return text

    def switch(found: re.Match) -> str:
        value = found[0]
        on = site.stream if "botId&quot;:4," in value else site.bot_stream
        return re.sub(r"streamEnabled&quot;:(true|false)", f"streamEnabled&quot;:{str(on).lower()}",
                      value)  # fmt: skip

    return CONFIG.sub(switch, text)


def chatgptfree(site: AIPowerSite, name: str) -> str:
    """chatgptfree.ai: ``/`` is post 6 with nine inline boxes, ``/chat/`` post 261 (Gemini)."""
    from .v2 import CHATGPTFREE_BOTS

    text = captured(site.release, "page-home.html")
    (start, end), *_ = container_blocks(text)
    block = text[start:end]
    if name == "page-chat.html":
        chosen, post_id = {25874: CHATGPTFREE_BOTS[25874]}, 261
    else:
        chosen, post_id = CHATGPTFREE_BOTS, 6
    boxes = "\n".join(
        as_bot(block, bot_id, bot.label, bot.provider, post_id) for bot_id, bot in chosen.items()
    )
    return text[:start] + boxes + text[end:]
