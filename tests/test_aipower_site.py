"""The tests' local AI Power site answers like the real one: each captured request, sent
again to it, gets the captured answer, and its stand-in model sees the same messages."""

from __future__ import annotations

import json
import re

import httpx2
import pytest

from tests.aipower_site import AIPowerSite
from tests.captures import RELEASES, SAMPLES, split_capture

# scenario -> the site's knobs that play it (the real stand-in reacted to magic words)
SCENARIOS = {
    "01-sse-ok": {},
    "04-sse-upstream-401": {"fault": "upstream_401"},
    "06-sse-in-stream-error": {"fault": "stream_error"},
    "07-sse-upstream-cut": {"fault": "upstream_cut"},
    "08-sse-history": {},
    "09-sse-multiline-message": {},
    "10-get-query-stream": {},
    "11-bad-nonce": {},
    "12-bad-nonce-no-referer": {},
    "13-missing-nonce": {},
    "14-empty-message": {},
    "15-minimal-g4f-fields": {},
    "16-no-action": {},
    "17-json-body": {},
    "18-unknown-action": {},
    "19-bot-json": {},
    "20-widget-action": {},
    "21-json-ok": {"stream": False},
    "23-json-upstream-401": {"stream": False, "fault": "upstream_401"},
    "25-bot-sse": {"bot_stream": True},
    "27-legacy-sse": {"legacy_model": True},
    "28-legacy-json": {"legacy_model": True, "stream": False},
}
VALID_NONCE = "e302406566"


def captured_request(path) -> tuple[str, str, dict, bytes]:
    """Method, target, headers and raw body of a captured request."""
    text = path.read_text(encoding="utf-8")
    head, _, rest = text.partition("\n\n")
    request_line, *header_lines = head.splitlines()
    method, target = request_line.split(" ", 1)
    headers = dict(line.split(": ", 1) for line in header_lines)
    body = rest.partition("\n\n")[2].rstrip("\n") if "# form fields" in rest else rest
    return method, target, headers, body.encode()


def normalised(body: str) -> str:
    return re.sub(r"(chatcmpl|cmpl)-fake\d+", r"\1-fakeID", body)


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_site_answers_each_captured_request_as_captured(release, scenario):
    folder = SAMPLES / release
    method, target, headers, body = captured_request(folder / f"{scenario}.request.txt")
    status, expected = split_capture(folder / f"{scenario}.response.http")
    with AIPowerSite(release) as site:
        for knob, value in SCENARIOS[scenario].items():
            setattr(site, knob, value)
        address = site.base_url.removeprefix("http://")

        def here(text: str) -> str:
            return text.replace("127.0.0.1:8088", address).replace(VALID_NONCE, site.nonce)

        target = here(target)
        headers = {name: here(value) for name, value in headers.items()}
        response = httpx2.request(method, target, headers=headers, content=here(body.decode()))
        assert response.status_code == status
        answer = response.text.replace(address, "127.0.0.1:8088")
        assert normalised(answer) == normalised(expected)
        upstream = folder / f"{scenario}.upstream.json"
        if upstream.exists():  # the site's HTTP library may have called the model twice
            call = json.loads(upstream.read_text())[0]["body"]
            assert site.upstream == [call.get("messages") or [{"prompt": call["prompt"]}]]
        else:
            assert site.upstream == []


def test_pages_carry_the_current_nonce_and_the_site_address():
    with AIPowerSite("1.8.91") as site:
        page = httpx2.get(site.chat_url).text
        assert f'data-nonce="{site.nonce}"' in page
        assert f'data-url="{site.base_url}/chat"' in page
        assert "127.0.0.1:8088" not in page
        old = site.nonce
        site.rotate_nonce()
        assert site.nonce != old and f'data-nonce="{site.nonce}"' in httpx2.get(site.chat_url).text
        site.page_nonce_override = old
        assert f'data-nonce="{old}"' in httpx2.get(site.bot_url).text


def test_fragmented_streams_reassemble_to_the_same_body():
    with AIPowerSite() as site:
        form = {"action": "wpaicg_chat_shortcode_message", "_wpnonce": site.nonce,
                "message": "Hi 🙂", "post_id": "6"}  # fmt: skip
        whole = httpx2.post(site.ajax_url, data=form).content
        site.chunk_size = 7
        pieces = []
        with httpx2.stream("POST", site.ajax_url, data=form) as response:
            pieces = list(response.iter_raw())
        assert len(pieces) > 10
        assert normalised(b"".join(pieces).decode()) == normalised(whole.decode())


def test_stop_leaves_no_thread_behind():
    import threading

    before = set(threading.enumerate())
    site = AIPowerSite().start()
    httpx2.get(site.chat_url)
    site.stop()
    assert {t for t in threading.enumerate() if t.name == "aipower-site"} - before == set()
