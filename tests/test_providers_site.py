"""The local site set up as chatgptfree.ai (``AIPowerSite("2.4.71", providers=True)``) plays
the captures of ``tests/samples/2.4.71-providers``: every captured request, sent again, gets
the captured answer byte for byte (after normalising what the real plugin and stand-in made
random or dated), and each model API receives the captured body. Then what tests use: faults
aimed at one bot, the images and the search flag the model saw, the page, the command line."""

from __future__ import annotations

import base64
import json
import re
import select
import subprocess
import sys
from datetime import UTC, datetime

import httpx2
import pytest

from tests.aipower_site import AIPowerSite, Fault
from tests.aipower_site.pages import configs, encode_config
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


def live_on_captured_day(site: AIPowerSite, calls: list[dict]) -> None:
    """Set the site's clock to the day the captures were made: a stand-in echoes the system
    prompt, date and all, into the answer, split over several deltas."""
    day = re.search(r"Today's date is ([A-Z][a-z]+ \d{1,2}, \d{4})\.", json.dumps(calls))
    if day:
        noon = datetime.strptime(day[1], "%B %d, %Y").replace(hour=12, tzinfo=UTC)
        site.advance_clock(noon.timestamp() - site.now())


def knobs(scenario: str) -> dict:
    return next((k for end, k in KNOBS.items() if scenario.endswith(end)), {})


@pytest.mark.parametrize("played_by", ["trigger words", "knobs"])
@pytest.mark.parametrize("scenario", [name for _, name in captures([PROVIDERS])])
def test_the_providers_site_answers_each_captured_request_as_captured(scenario, played_by):
    with AIPowerSite("2.4.71", providers=True) as site, client() as http:
        upstream = FOLDER / f"{scenario}.upstream.json"
        calls = json.loads(upstream.read_text()) if upstream.exists() else []
        live_on_captured_day(site, calls)
        replayer = ProvidersReplayer(site, CAPTURED_NONCE, http)
        if played_by == "knobs":
            site.triggers = False
            for knob, value in knobs(scenario).items():
                setattr(site, knob, value)
        for step in (f"{scenario}.turn1.cache", f"{scenario}.turn1", f"{scenario}.cache"):
            if (FOLDER / f"{step}.request.txt").exists():
                replayer.check(FOLDER, step)
        replayer.check(FOLDER, scenario)
        assert [(c.host, c.path, c.api) for c in site.calls] == [
            (call["host"], call["path"], call["provider"]) for call in calls
        ]
        assert [undated(c.body) for c in site.calls] == [undated(call["body"]) for call in calls]
        assert site.errors == []


# -- what tests of the client use --------------------------------------------------------------

CACHE, STREAM = "aipkit_cache_sse_message", "aipkit_frontend_chat_stream"
RATE_LIMIT_WORDS = {GPT4O: "Rate limit reached", GEMINI: "exceeded your current quota",
                    DEEPSEEK: "Rate Limit Reached", CLAUDE: "rate_limit_error",
                    GROK: "temporarily at capacity", LLAMA: "(Code: 429)"}  # fmt: skip
SEARCH_BOTS = [25865, 25871, 25874, 25875, 25872, 25870, 25869, 29624]


def png_input(data: bytes = PNG, mime: str = "image/png") -> dict:
    return {"mime_type": mime, "base64_data": base64.b64encode(data).decode()}


def cache(site, http, bot: int, message: str, images=None, as_multipart=True) -> httpx2.Response:
    form = {"action": CACHE, "message": message, "_ajax_nonce": site.nonce, "bot_id": str(bot)}
    if images is not None:
        form["image_inputs"] = json.dumps(images)
    if as_multipart:  # as the browser sends a message with images
        files = {name: (None, value) for name, value in form.items()}
        return http.post(site.ajax_url, files=files)
    return http.post(site.ajax_url, data=form)


def ask(site, http, bot: int, message="Hi", images=None, flags=None, **options) -> bytes:
    """Both steps of a message to ``bot``; the stream's body."""
    key = cache(site, http, bot, message, images, **options).json()["data"]["cache_key"]
    query = {"action": STREAM, "cache_key": key, "bot_id": bot, "session_id": SESSION,
             "conversation_uuid": "c1", "post_id": 6, "_ajax_nonce": site.nonce,
             **(flags or {})}  # fmt: skip
    return http.get(site.ajax_url, params=query).content


def answer(body: bytes) -> str:
    return "".join(data["delta"] for name, data in events(body) if name == "message")


def named(body: bytes, event: str) -> list:
    return [data for name, data in events(body) if name == event]


@pytest.fixture
def site():
    with AIPowerSite("2.4.71", providers=True) as running:
        yield running
        assert running.errors == []


@pytest.fixture
def http():
    with client() as opened:
        yield opened


def test_the_pages_are_the_captured_ones_at_this_sites_address(site, http):
    for url, name in ((site.home_url, "page-home.html"), (site.chat_url, "page-chat.html")):
        page = http.get(url).text
        assert {c["nonce"] for c in configs(page)} == {site.nonce}
        back = re.sub(rf"127\.0\.0\.1(:|%3A){site.port}", r"127.0.0.1\g<1>8088", page)
        assert back.replace(site.nonce, CAPTURED_NONCE) == (FOLDER / name).read_text()
    assert http.get(site.bot_url).status_code == 404


def test_the_providers_pages_write_data_config_as_the_plugin_does():
    for name in ("page-home.html", "page-chat.html"):
        page = (FOLDER / name).read_text()
        written = re.findall(r"data-config='([^']*)'", page)
        assert written and [encode_config(c) for c in configs(page)] == written


def test_each_bot_is_as_its_page_config_says(site, http):
    boxes = configs(http.get(site.home_url).text)
    assert [c["botId"] for c in boxes] == list(site.bots)
    for config in boxes:
        bot = site.bots[config["botId"]]
        assert (bot.label, bot.provider) == (config["headerName"], config["provider"])
        assert bot.image_upload == config["imageUploadEnabledUI"]
        assert bot.web_search == config["allowWebSearchTool"]
        assert bot.google_grounding == config["allowGoogleSearchGrounding"]
    assert [c["botId"] for c in configs(http.get(site.chat_url).text)] == [GEMINI]


def test_a_bots_page_settings_can_change_as_in_wp_admin(site, http):
    site.configure_bot(GPT4O, webToggleDefaultOn=True, allowWebSearchTool=False)
    site.configure_bot(DEEPSEEK, imageUploadEnabledUI=True)
    boxes = {c["botId"]: c for c in configs(http.get(site.home_url).text)}
    assert boxes[GPT4O]["webToggleDefaultOn"] is True
    assert boxes[GPT4O]["allowWebSearchTool"] is False
    assert boxes[DEEPSEEK]["imageUploadEnabledUI"] is True
    assert boxes[CLAUDE] == configs((FOLDER / "page-home.html").read_text())[4] | {
        "nonce": site.nonce, "ajaxUrl": site.ajax_url}  # fmt: skip
    ask(site, http, GPT4O, "What is new today?", flags=WEB)
    assert site.calls[-1].web_search is False and site.calls[-1].search_asked is True


def test_the_issue_names_the_model_api_faults():
    assert Fault("bad_key") is Fault.UPSTREAM_401
    assert Fault("rate_limited") is Fault.UPSTREAM_429
    assert Fault("max_tokens") is Fault.INCOMPLETE
    assert Fault.UPSTREAM_429.at("Claude") == (Fault.UPSTREAM_429, "chat@claude")


@pytest.mark.parametrize("selector", ["claude", "anthropic", "Claude", 25875])
def test_a_fault_aimed_at_one_bot_plays_there_once(site, http, selector):
    site.faults = [Fault.UPSTREAM_429.at(selector)]
    assert answer(ask(site, http, DEEPSEEK)).startswith("Hello from the fake upstream.")
    refused = ask(site, http, CLAUDE)
    assert named(refused, "error")[0]["error"].endswith("Type: rate_limit_error")
    assert named(refused, "done") == [] and answer(refused) == ""
    assert site.calls[-1].status == 429 and site.calls[-1].api == "anthropic"
    assert named(ask(site, http, CLAUDE), "done") == [{"finished": True}]


@pytest.mark.parametrize(("bot", "words"), RATE_LIMIT_WORDS.items())
def test_each_api_rate_limits_in_its_own_words(site, http, bot, words):
    site.fault = ("rate_limited", f"@{bot}")
    [error] = named(ask(site, http, bot), "error")
    assert error["error"].startswith("API Error: ") and words in error["error"]


@pytest.mark.parametrize(("bot", "status"), [(GPT4O, 401), (GEMINI, 400), (GROK, 400)])
def test_a_bad_key_is_the_apis_http_status(site, http, bot, status):
    site.fault = Fault.UPSTREAM_401.at(bot)
    assert named(ask(site, http, bot), "error")
    assert site.calls[-1].status == status


def test_google_swallows_an_error_inside_the_stream(site, http):
    site.fault = Fault.STREAM_ERROR.at("google")
    body = ask(site, http, GEMINI)
    assert answer(body) == "Hello from" and named(body, "error") == []
    assert named(body, "done") == [{"finished": True}]
    body = ask(site, http, CLAUDE)  # the fault is Gemini's only
    assert named(body, "done") and named(body, "error") == []


@pytest.mark.parametrize("bot", [GPT4O, GEMINI, CLAUDE, GROK, LLAMA])
@pytest.mark.parametrize("as_multipart", [True, False])
def test_an_image_reaches_the_model_and_it_says_so(site, http, bot, as_multipart):
    body = ask(site, http, bot, "What is this?", [png_input()], as_multipart=as_multipart)
    assert answer(body).endswith("You said: What is this? [image: image/png, 73 bytes]")
    [call] = site.calls
    assert [(i["mime_type"], i["size"]) for i in call.images] == [("image/png", 73)]
    assert base64.b64decode(call.images[0]["base64_data"]) == PNG


def test_deepseek_drops_an_image_silently(site, http):
    body = ask(site, http, DEEPSEEK, "What is this?", [png_input(), png_input()])
    assert answer(body) == "Hello from the fake upstream. You said: What is this?"
    assert site.calls[-1].images == []
    assert site.calls[-1].body["messages"][-1] == {"role": "user", "content": "What is this?"}


def test_two_images_are_both_seen(site, http):
    body = ask(
        site, http, CLAUDE, "Compare", [png_input(), png_input(b"\xff\xd8jpeg", "image/jpeg")]
    )
    assert answer(body).endswith(" [image: image/png, 73 bytes] [image: image/jpeg, 6 bytes]")
    assert len(site.calls[-1].images) == 2


def test_an_image_without_text_reaches_no_model(site, http):
    body = ask(site, http, GPT4O, "", [png_input()])
    assert "You said: You are a helpful AI Assistant." in answer(body)
    assert site.calls[-1].images == [] and len(site.calls[-1].body["input"]) == 1


@pytest.mark.parametrize(
    ("images", "code"),
    [
        ([png_input()] * 5, "too_many_images"),
        ([png_input(b"GIF89a", "image/gif")], "invalid_image_type"),
        ([{"mime_type": "image/png", "base64_data": "not base64!"}], "invalid_image_payload"),
        ("[", "invalid_image_payload"),
    ],
)
def test_the_cache_step_refuses_images_as_the_plugin_does(site, http, images, code):
    form = {"action": CACHE, "message": "Hi", "_ajax_nonce": site.nonce, "bot_id": str(GPT4O),
            "image_inputs": images if isinstance(images, str) else json.dumps(images)}  # fmt: skip
    response = http.post(site.ajax_url, files={k: (None, v) for k, v in form.items()})
    assert response.status_code == 400 and response.json()["data"]["code"] == code
    assert site.calls == []


def test_a_post_over_post_max_size_loses_its_fields(site, http):
    big = png_input(b"\x89PNG" + bytes(7 * 1024 * 1024))  # 7 MB: 9.3 MB of base64
    response = cache(site, http, GPT4O, "Hi", [big])
    assert (response.status_code, response.text) == (400, "0")
    site.post_max_size = 64 * 1024 * 1024
    assert cache(site, http, GPT4O, "Hi", [big]).json()["success"] is True


def test_xai_refuses_a_webp_inside_the_stream(site, http):
    body = ask(site, http, GROK, "Hi", [png_input(b"RIFFxxxxWEBP", "image/webp")])
    assert named(body, "error") == [
        {"error": "xAI image analysis supports JPG and PNG images only."}
    ]
    assert named(body, "message_start") == [] and site.calls == []


WEB = {"frontend_web_search_active": "true"}
GROUNDING = {"frontend_google_search_grounding_active": "true"}


@pytest.mark.parametrize("bot", SEARCH_BOTS)
def test_web_search_cites_two_sources_on_every_bot_that_allows_it(site, http, bot):
    body = ask(site, http, bot, "What is new today?", flags=GROUNDING if bot == GEMINI else WEB)
    assert site.calls[-1].web_search is True and "tools" in site.calls[-1].body
    cited = [entry for batch in named(body, "citations") for entry in batch]
    assert {entry["url"] for entry in cited} == {url for url, _ in SOURCES}
    assert {e["url"] for e in named(body, "done")[0]["citations"]} == {url for url, _ in SOURCES}
    assert answer(body) == "Hello from the fake upstream. You said: What is new today?"


@pytest.mark.parametrize(
    ("bot", "flags"), [(GPT4O, {}), (DEEPSEEK, WEB), (GEMINI, WEB), (CLAUDE, GROUNDING)]
)
def test_no_search_without_the_bots_own_toggle(site, http, bot, flags):
    body = ask(site, http, bot, "What is new today?", flags=flags)
    assert site.calls[-1].web_search is False and "tools" not in site.calls[-1].body
    assert site.calls[-1].search_asked is bool(flags)
    assert named(body, "citations") == [] and named(body, "done") == [{"finished": True}]


@pytest.mark.parametrize(
    ("bot", "status"),
    [(GPT4O, "response.web_search_call.searching"), (GEMINI, "google_search_call"),
     (CLAUDE, "content_block_start"), (LLAMA, "response.web_search_call.searching")],
)  # fmt: skip
def test_a_search_says_so_in_status_events(site, http, bot, status):
    body = ask(site, http, bot, "What is new today?", flags=GROUNDING if bot == GEMINI else WEB)
    assert status in [data["type"] for data in named(body, "status")]


def test_the_command_line_serves_the_providers_setup():
    command = [sys.executable, "-m", "tests.aipower_site", "--release", "2.4.71", "--port", "0",
               "--providers", "--fault", "rate_limited@anthropic",
               "--bot-config", "25875:webToggleDefaultOn=true"]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert select.select([process.stdout], [], [], 20)[0], "the site did not start"
            home = re.search(r"http://127\.0\.0\.1:\d+/", process.stdout.readline())[0]
            with client() as http:
                boxes = {c["botId"]: c for c in configs(http.get(home).text)}
                assert len(boxes) == 9 and boxes[CLAUDE]["webToggleDefaultOn"] is True
                config = boxes[CLAUDE]
                form = {"action": CACHE, "message": "Hi", "_ajax_nonce": config["nonce"],
                        "bot_id": str(CLAUDE)}  # fmt: skip
                key = http.post(config["ajaxUrl"], data=form).json()["data"]["cache_key"]
                query = {"action": STREAM, "cache_key": key, "bot_id": CLAUDE,
                         "session_id": SESSION, "conversation_uuid": "c1",
                         "_ajax_nonce": config["nonce"]}  # fmt: skip
                body = http.get(config["ajaxUrl"], params=query).content
            assert "rate_limit_error" in named(body, "error")[0]["error"]
        finally:
            process.kill()
            process.wait(timeout=10)


MODEL_FAULTS = [Fault.UPSTREAM_401, Fault.UPSTREAM_429, Fault.STREAM_ERROR, Fault.RESPONSE_FAILED,
                Fault.UPSTREAM_CUT, Fault.CONNECTION_ERROR, Fault.INCOMPLETE, Fault.EMPTY,
                Fault.BIG, Fault.INVALID_UTF8, Fault.OPENROUTER, Fault.STATUS_ONLY,
                Fault.CITATIONS, Fault.UNKNOWN_EVENT, Fault.NO_DONE]  # fmt: skip


@pytest.mark.parametrize("fault", MODEL_FAULTS)
def test_every_model_fault_plays_on_every_api(site, http, fault):
    site.big_answer_bytes = 5000
    for bot in (GPT4O, GEMINI, DEEPSEEK, CLAUDE, GROK, LLAMA):
        site.fault = fault.at(bot)
        body = ask(site, http, bot, "What is new today?", flags=WEB)
        assert named(body, "message_start"), (fault, bot)
        ends = named(body, "done") + named(body, "error")
        assert bool(ends) is (fault != Fault.NO_DONE), (fault, bot)
    assert len(site.calls) == 6
