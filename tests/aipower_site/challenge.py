"""A Cloudflare-like JavaScript challenge in front of every path of the site.

With a challenge variant on (``site.page_variant = "challenge"``), a request passes only
with a ``cf_clearance`` cookie whose value is the token of its own User-Agent: a cookie
earned by one browser and sent with another User-Agent meets the challenge again, as on
Cloudflare. Anything else gets a 403 "Just a moment..." page (``cf-mitigated: challenge``)
whose script computes the token from ``navigator.userAgent``, sets the cookie and reloads:

* ``challenge``: at once;
* ``challenge-slow``: after ``SLOW_MS`` (a second and a half: several of the clearance's polls);
* ``challenge-never``: never (the page only says it is checking);
* ``challenge-click``: once the visitor clicks the "Verify you are human" button.

The token is FNV-1a over the site's secret and the User-Agent, in Python and in the page's
JavaScript alike; the challenge page also sets an HttpOnly ``__cf_bm`` cookie, as
Cloudflare does, and loads a pixel from ``localhost`` that sets a cookie there: a client
that keeps only the page's host's cookies leaves that one behind.
"""

from __future__ import annotations

import json
import secrets
from http.cookies import SimpleCookie

from .http import Recorded, Reply

VARIANTS = ("challenge", "challenge-slow", "challenge-never", "challenge-click")
SLOW_MS = 1500
CLEARANCE_SECONDS = 3600
PIXEL = "/cdn-cgi/pixel.gif"
BUTTON = '<button id="verify">Verify you are human</button>'
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00"
    b"\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)

SCRIPT = """
function fnv(text) {
  var hash = 0x811c9dc5;
  for (var i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i) & 0xff;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return ("0000000" + hash.toString(16)).slice(-8);
}
function token() {
  var seed = SECRET + "|" + navigator.userAgent, out = "";
  for (var round = 0; round < 4; round++) { seed = fnv(seed) + seed; out += seed.slice(0, 8); }
  return out;
}
function pass() {
  document.cookie = "cf_clearance=" + token() + "; path=/; max-age=MAX_AGE; SameSite=Lax";
  location.reload();
}
"""

STARTS = {
    "challenge": "pass();",
    "challenge-slow": f"setTimeout(pass, {SLOW_MS});",
    "challenge-never": "",
    "challenge-click": 'document.getElementById("verify").onclick = pass;',
}


def fnv(text: str) -> str:
    """FNV-1a (32 bits) of ``text``'s low bytes, as eight hex digits (as the page's script)."""
    value = 0x811C9DC5
    for char in text:
        value = ((value ^ (ord(char) & 0xFF)) * 0x01000193) & 0xFFFFFFFF
    return f"{value:08x}"


def token(secret: str, user_agent: str) -> str:
    """The clearance a browser with ``user_agent`` earns from a site with ``secret``."""
    seed, out = f"{secret}|{user_agent}", ""
    for _round in range(4):
        seed = fnv(seed) + seed
        out += seed[:8]
    return out


class Challenge:
    """The check one running site plays (its secret is new with every site)."""

    def __init__(self) -> None:
        self.secret = secrets.token_hex(8)
        self.passed = 0  # requests that came through with a valid clearance
        self.challenged = 0  # challenge pages served

    def expected(self, request: Recorded) -> str:
        return token(self.secret, request.headers.get("user-agent", ""))

    def cleared(self, request: Recorded) -> bool:
        cookies = SimpleCookie()
        try:
            cookies.load(request.headers.get("cookie", ""))
        except Exception:  # noqa: BLE001 - a malformed Cookie header clears nothing
            return False
        sent = cookies.get("cf_clearance")
        return sent is not None and secrets.compare_digest(sent.value, self.expected(request))

    def reply(self, variant: str, request: Recorded) -> Reply | None:
        """None when ``request`` may pass; else the challenge page (or the pixel)."""
        if request.path == PIXEL:
            return pixel()
        if self.cleared(request):
            self.passed += 1
            return None
        self.challenged += 1
        return challenge_page(variant, self.secret, request)


def challenge_page(variant: str, secret: str, request: Recorded) -> Reply:
    host = request.headers.get("host", "127.0.0.1")
    port = host.rpartition(":")[2] if ":" in host else "80"
    script = SCRIPT.replace("SECRET", json.dumps(secret)).replace("MAX_AGE", str(CLEARANCE_SECONDS))
    button = BUTTON if variant == "challenge-click" else ""
    body = (
        '<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title></head><body>'
        f"<h1>{host}</h1><p>Checking your browser before accessing {host}.</p>{button}"
        f'<img alt="" src="http://localhost:{port}{PIXEL}">'
        f"<script>{script}{STARTS[variant]}</script></body></html>"
    ).encode()
    headers = [
        ("Server", "cloudflare"),
        ("cf-mitigated", "challenge"),
        ("Cache-Control", "private, max-age=0, no-store, no-cache, must-revalidate"),
        ("Set-Cookie", f"__cf_bm={secrets.token_hex(16)}; path=/; max-age=1800; HttpOnly"),
        ("Content-Type", "text/html; charset=UTF-8"),
        ("Content-Length", str(len(body))),
    ]
    return Reply(403, headers, body)


def pixel() -> Reply:
    """An image that sets a cookie on whatever host it is loaded from."""
    headers = [
        ("Set-Cookie", f"elsewhere={secrets.token_hex(8)}; path=/; max-age=3600"),
        ("Content-Type", "image/gif"),
        ("Content-Length", str(len(GIF))),
    ]
    return Reply(200, headers, GIF)
