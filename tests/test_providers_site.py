"""The local site set up as chatgptfree.ai (``AIPowerSite("2.4.71", providers=True)``) plays
the captures of ``tests/samples/2.4.71-providers``: every captured request, sent again, gets
the captured answer byte for byte (after normalising what the real plugin and stand-in made
random or dated), and each model API receives the captured body. Then what tests use: faults
aimed at one bot, the images and the search flag the model saw, the page, the command line."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys

import httpx2
import pytest

from tests.aipower_site import AIPowerSite, Fault
from tests.aipower_site.pages import configs
from tests.aipower_site.providers import CAPTURED_NONCE, SOURCES
from tests.captures import PROVIDERS, SAMPLES, captures
from tests.test_aipower_site import (
    SESSION,
    TODAY,
    Replayer,
    client,
    events,
    long_reply,
    normalised,
    unicode_reply,
)

FOLDER = SAMPLES / PROVIDERS
IDS = [  # what the providers' stand-in made random, and the site's date
    (rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", b"UUID"),
    (rb"gen-\d{10}-[A-Za-z0-9]{20}", b"gen-ID"),
    (rb"(msg|ws)_tmp_[A-Za-z0-9]{24}", rb"\1_tmp_ID"),
    (rb"ws_[0-9a-f]{32}", b"ws_ID"),
    (rb"ws_fake\d{6}", b"ws_fakeN"),
    (rb"(msg|srvtoolu)_01FakeUpstream\d{8}", rb"\1_01FakeUpstreamN"),
    (TODAY.pattern.encode(), b"Today's date is DATE."),
]
KNOBS = {  # scenario name ending -> the site's knobs that play it (the stand-in's trigger words)
    "-upstream-401": {"fault": Fault.UPSTREAM_401},
    "-upstream-429": {"fault": Fault.UPSTREAM_429},
    "-in-stream-error": {"fault": Fault.STREAM_ERROR},
    "-long-incomplete": {"fault": Fault.INCOMPLETE, "reply": long_reply},
    "-unicode": {"reply": unicode_reply},
}
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEElEQVR4nGP4z8AARAwQCgAf7gP9i18U1AAAAABJRU5ErkJggg=="
)
GPT4O, GEMINI, DEEPSEEK, CLAUDE, GROK, LLAMA = 25865, 25874, 25873, 25875, 25872, 25870


def provider_normalised(body: bytes) -> bytes:
    body = normalised(body)
    for pattern, replacement in IDS:
        body = re.sub(pattern, replacement, body)
    return body


class ProvidersReplayer(Replayer):
    normalise = staticmethod(provider_normalised)


def undated(body: dict) -> dict:
    return json.loads(TODAY.sub("DATE", json.dumps(body)))


def knobs(scenario: str) -> dict:
    return next((k for end, k in KNOBS.items() if scenario.endswith(end)), {})


@pytest.mark.parametrize("scenario", [name for _, name in captures([PROVIDERS])])
def test_the_providers_site_answers_each_captured_request_as_captured(scenario):
    with AIPowerSite("2.4.71", providers=True) as site, client() as http:
        replayer = ProvidersReplayer(site, CAPTURED_NONCE, http)
        for knob, value in knobs(scenario).items():
            setattr(site, knob, value)
        for step in (f"{scenario}.turn1.cache", f"{scenario}.turn1", f"{scenario}.cache"):
            if (FOLDER / f"{step}.request.txt").exists():
                replayer.check(FOLDER, step)
        replayer.check(FOLDER, scenario)
        upstream = FOLDER / f"{scenario}.upstream.json"
        calls = json.loads(upstream.read_text()) if upstream.exists() else []
        assert [(c.host, c.path, c.api) for c in site.calls] == [
            (call["host"], call["path"], call["provider"]) for call in calls
        ]
        assert [undated(c.body) for c in site.calls] == [undated(call["body"]) for call in calls]
        assert site.errors == []
