"""What WordPress and PHP do to text and answers, as far as the chat protocols show it:
``json_encode`` flavours, ``sanitize_*``, ``wp_kses_post``, ``wp_strip_all_tags``,
``uniqid`` and the admin-ajax replies (headers in Apache's order)."""

from __future__ import annotations

import html
import json
import random
import re
from html.entities import name2codepoint

from .http import Reply

ADMIN_AJAX_HEADERS = [
    ("X-Robots-Tag", "noindex"),
    ("X-Content-Type-Options", "nosniff"),
    ("Expires", "Wed, 11 Jan 1984 05:00:00 GMT"),
    ("Cache-Control", "no-cache, must-revalidate, max-age=0"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
    ("X-Frame-Options", "SAMEORIGIN"),
]
EARLY_HEADERS = ("X-Robots-Tag", "Expires", "Cache-Control")  # sent before the action check
HTML = "text/html; charset=UTF-8"
JSON = "application/json; charset=UTF-8"
# statuses after which Apache drops the connection (ap_status_drops_connection)
DROPS_CONNECTION = {400, 408, 411, 413, 414, 500, 501, 503}
CRITICAL_ERROR = (
    '<p>There has been a critical error on this website.</p><p><a href="https://wordpress'
    '.org/support/article/faq-troubleshooting/">Learn more about troubleshooting WordPress.'
    "</a></p>"
)


def ajax_headers(cache_control: str) -> list[tuple[str, str]]:
    """admin-ajax's headers, with the handler's own Cache-Control in its place."""
    return [(k, cache_control if k == "Cache-Control" else v) for k, v in ADMIN_AJAX_HEADERS]


def ajax_reply(
    status: int,
    body: bytes,
    content_type: str = HTML,
    close: bool | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> Reply:
    """An admin-ajax answer with a Content-Length; ``close`` defaults to Apache's rule."""
    close = status in DROPS_CONNECTION if close is None else close
    head = list(ADMIN_AJAX_HEADERS if headers is None else headers)
    head.append(("Content-Length", str(len(body))))
    if close:
        head.append(("Connection", "close"))
    head.append(("Content-Type", content_type))
    return Reply(status, head, body)


def zero_reply(action: str = "?") -> Reply:
    """admin-ajax for an action nobody registered: ``0`` with HTTP 400. Without any action
    it dies before sending its security headers (as captured)."""
    if action:
        return ajax_reply(400, b"0")
    early = [(name, value) for name, value in ADMIN_AJAX_HEADERS if name in EARLY_HEADERS]
    return ajax_reply(400, b"0", headers=early)


def json_reply(value: object, status: int = 200) -> Reply:
    """``wp_send_json``: PHP's default ``json_encode`` flags."""
    return ajax_reply(status, php_json(value), JSON)


def php_json(value: object) -> bytes:
    """``json_encode`` with PHP's default flags: ``\\/`` and ``\\uXXXX`` escapes."""
    return json.dumps(value, separators=(",", ":")).replace("/", "\\/").encode()


def php_json_unicode(value: object) -> str:
    """``json_encode(…, JSON_UNESCAPED_UNICODE)``: raw UTF-8, ``\\/``, escaped U+2028/9."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("/", "\\/").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def esc_html(text: str) -> str:
    return html.escape(text, quote=True).replace("&#x27;", "&#039;")


def sanitize_text_field(text: str, keep_newlines: bool = False) -> str:
    """WordPress's ``_sanitize_text_fields``; ``keep_newlines`` makes it
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


def sanitize_key(text: str) -> str:
    return re.sub(r"[^a-z0-9_\-]", "", text.lower())


def absint(text: str) -> int:
    found = re.match(r"\s*[+-]?\d+", text or "")
    return abs(int(found.group(0))) if found else 0


def magic_quotes(text: str) -> str:
    """``wp_magic_quotes``: a backslash before every quote and backslash."""
    return re.sub(r"(['\"\\\\])", r"\\\1", text)


def strip_all_tags(text: str) -> str:
    """``wp_strip_all_tags``: script/style elements go whole, then PHP's ``strip_tags``."""
    text = re.sub(r"<(script|style)[^>]*?>.*?</\1>", "", text, flags=re.S | re.I)
    out, index = [], 0
    while index < len(text):
        char = text[index]
        if char == "<" and index + 1 < len(text) and not text[index + 1].isspace():
            quote, index = None, index + 1  # inside a tag: skip to its ">" (quotes honoured)
            while index < len(text) and (text[index] != ">" or quote):
                if text[index] in "\"'":
                    quote = None if quote == text[index] else quote or text[index]
                index += 1
        else:
            out.append(char)
        index += 1
    return "".join(out).strip()


KSES_TAGS = frozenset(
    [
        "a",
        "abbr",
        "acronym",
        "address",
        "area",
        "article",
        "aside",
        "audio",
        "b",
        "bdo",
        "big",
        "blockquote",
        "br",
        "button",
        "caption",
        "cite",
        "code",
        "col",
        "colgroup",
        "dd",
        "del",
        "details",
        "dfn",
        "div",
        "dl",
        "dt",
        "em",
        "fieldset",
        "figcaption",
        "figure",
        "font",
        "footer",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hgroup",
        "hr",
        "i",
        "img",
        "ins",
        "kbd",
        "label",
        "legend",
        "li",
        "main",
        "map",
        "mark",
        "menu",
        "nav",
        "object",
        "ol",
        "p",
        "pre",
        "q",
        "rb",
        "rp",
        "rt",
        "rtc",
        "ruby",
        "s",
        "samp",
        "section",
        "small",
        "span",
        "strike",
        "strong",
        "sub",
        "summary",
        "sup",
        "table",
        "tbody",
        "td",
        "textarea",
        "tfoot",
        "th",
        "thead",
        "title",
        "tr",
        "track",
        "tt",
        "u",
        "ul",
        "var",
        "video",
    ]
)
KSES_ATTRIBUTES = frozenset(
    [
        "align",
        "alt",
        "aria-describedby",
        "aria-details",
        "aria-label",
        "aria-labelledby",
        "aria-hidden",
        "class",
        "cite",
        "colspan",
        "datetime",
        "dir",
        "download",
        "height",
        "href",
        "hreflang",
        "id",
        "lang",
        "name",
        "rel",
        "rev",
        "role",
        "rowspan",
        "src",
        "style",
        "target",
        "title",
        "width",
        "xml:lang",
    ]
)
KSES_SPLIT = re.compile(r"(<!--.*?(?:-->|$))|(<[^>]*(?:>|$)|>)")
KSES_TAG = re.compile(r"^<\s*(/\s*)?([a-zA-Z0-9-]+)([^>]*)>?$")
KSES_ATTRIBUTE = re.compile(r"""([-a-zA-Z:_]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"']+)))?""")


def kses_post(text: str) -> str:
    """``wp_kses_post`` as the chat log stores content: entities normalised, unknown tags
    and anything tag-like (``< >``) removed, allowed tags rebuilt."""
    text = normalize_entities(text.replace("\0", ""))
    return KSES_SPLIT.sub(lambda m: _kses_piece(m.group(0)), text)


def normalize_entities(text: str) -> str:
    text = text.replace("&", "&amp;")
    text = re.sub(
        r"&amp;([A-Za-z]{2,8}[0-9]{0,2});",
        lambda m: f"&{m[1]};" if m[1] in name2codepoint else m[0],
        text,
    )

    def numeric(number: int, original: str, hexadecimal: bool) -> str:
        if not (0 < number <= 0x10FFFF) or 0xD800 <= number <= 0xDFFF:
            return original
        if hexadecimal:
            return f"&#x{original[7:-1].lstrip('0')};"
        return f"&#{str(number).rjust(3, '0')};"

    text = re.sub(r"&amp;#(0*[0-9]{1,7});", lambda m: numeric(int(m[1]), m[0], False), text)
    return re.sub(
        r"&amp;#[Xx](0*[0-9A-Fa-f]{1,6});", lambda m: numeric(int(m[1], 16), m[0], True), text
    )


def _kses_piece(piece: str) -> str:
    piece = piece.replace('\\"', '"')
    if not piece.startswith("<"):
        return "&gt;"
    if piece.startswith("<!--"):
        inner = kses_post(piece.replace("<!--", "").replace("-->", ""))
        inner = re.sub(r"-$", "", re.sub(r"--+", "-", inner))
        return f"<!--{inner}-->" if inner else ""
    found = KSES_TAG.match(piece)
    if not found or found[2].lower() not in KSES_TAGS:
        return ""
    if found[1]:
        return f"</{found[2]}>"
    slash = " /" if re.search(r"\s*/\s*$", found[3]) else ""
    kept = []
    for attribute in KSES_ATTRIBUTE.finditer(found[3]):
        name = attribute[1]
        if name.lower() not in KSES_ATTRIBUTES and not name.lower().startswith("data-"):
            continue
        if attribute[2] is not None:
            kept.append(f'{name}="{attribute[2]}"')
        elif attribute[3] is not None:
            kept.append(f"{name}='{attribute[3]}'")
        elif attribute[4] is not None:
            kept.append(f'{name}="{attribute[4]}"')
        else:
            kept.append(name)
    attributes = re.sub(r"[<>]", "", "".join(f" {item}" for item in kept))
    return f"<{found[2]}{attributes}{slash}>"


def uniqid(now: float) -> str:
    """PHP ``uniqid('', true)``: 13 hex digits of time, then ``D.DDDDDDDD``."""
    seconds, micro = int(now), int((now % 1) * 1_000_000)
    return f"{seconds:08x}{micro:05x}{random.randint(0, 9)}.{random.randint(0, 99999999):08d}"
