"""Every real capture in tests/samples, through the plugin's core and both drivers.

No sockets: a canned site (tests/canned.py) answers each request the plugin sends with
the captured response of the scenario, byte for byte, and with the captured normal
answers elsewhere. Each capture must give the right answer or one clear sentence, through
the sync and the async model alike. (The same captures are played over real sockets by
the local AI Power site in the end-to-end tests.)
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path

import llm
import pytest

import llm_chatgptfree as plugin
from tests.canned import Canned, CannedSite, html_reply, read_capture
from tests.captures import PROVIDERS, SAMPLES, captures, reference_answer, split_capture

SITE = "http://127.0.0.1:8088/chat/"
HOST = re.escape("127.0.0.1:8088")
ASKED = 'Hello, what\'s 2+2? Answer "briefly".'
NORMAL_2X = f"Hello from the fake upstream. You said: {ASKED}"


def ask(model_kind: str, prompt: str = "Hello", **options) -> str:
    if model_kind == "sync":
        return llm.get_model("chatgptfree").prompt(prompt, site=SITE, **options).text()

    async def run() -> str:
        model = llm.get_async_model("chatgptfree")
        return await model.prompt(prompt, site=SITE, **options).text()

    return asyncio.run(run())


# -- 1.x -------------------------------------------------------------------------------------

# scenario -> the error sentence expected (a regular expression), or None for an answer
ERRORS_1X = {
    "04-sse-upstream-401": r"No answer from {host}: the site's model failed: Incorrect API "
    r"key provided: sk-harn\*\*\*\*\*\. You can find your API key at "
    r"https://platform\.openai\.com/account/api-keys\.$",
    "05-sse-upstream-429": r"No answer from {host}: the site's model failed: Rate limit "
    r"reached for gpt-4o-mini .*\.$",
    "06-sse-in-stream-error": r"The answer from {host} broke off after 10 characters \(the "
    r"site's model failed: The server had an error while processing your request\. Sorry "
    r"about that!\); the text above is incomplete\.$",
    "07-sse-upstream-cut": r"The answer from {host} broke off after 10 characters \(the "
    r"stream ended without a finish signal\); the text above is incomplete\.$",
    "14-empty-message": r"{host} says: It appears that nothing was inputted\.$",
    "16-no-action": r"{host} has no AI Power chat handler",
    "17-json-body": r"{host} has no AI Power chat handler",
    "18-unknown-action": r"{host} has no AI Power chat handler",
    "23-json-upstream-401": r"{host} says: Incorrect API key provided: sk-harn\*\*\*\*\*\. "
    r"You can find your API key at https://platform\.openai\.com/account/api-keys\.$",
}
NONCE_REJECTIONS_1X = {"11-bad-nonce", "12-bad-nonce-no-referer", "13-missing-nonce"}


def site_1x(release: str, scenario: str) -> CannedSite:
    """The page of ``release``; every POST answered with the capture (a rejected nonce only
    the first: the site takes the fresh one)."""
    page = (SAMPLES / release / "page-chat.html").read_text(encoding="utf-8")
    capture = SAMPLES / release / f"{scenario}.response.http"
    normal = read_capture(SAMPLES / release / "01-sse-ok.response.http")
    posts = []

    def route(seen):
        if seen.method == "GET":
            return html_reply(page)
        posts.append(seen)
        if scenario in NONCE_REJECTIONS_1X and len(posts) > 1:
            return normal
        return read_capture(capture)

    return CannedSite(route)


@pytest.mark.parametrize("model_kind", ["sync", "async"])
@pytest.mark.parametrize(("release", "scenario"), captures())
def test_every_1x_capture_gives_the_answer_or_one_sentence(
    monkeypatch, release: str, scenario: str, model_kind: str
):
    site = site_1x(release, scenario).install(monkeypatch)
    status, body = split_capture(SAMPLES / release / f"{scenario}.response.http")
    if scenario in ERRORS_1X:
        with pytest.raises(llm.ModelError) as caught:
            ask(model_kind)
        message = str(caught.value)
        assert re.search(ERRORS_1X[scenario].format(host=HOST), message), message
        assert "\n" not in message and len(message) < 400
    elif scenario in NONCE_REJECTIONS_1X:
        # a rejected nonce makes the plugin read the page again, past caches, and resend
        answer = ask(model_kind)
        normal = reference_answer(split_capture(SAMPLES / release / "01-sse-ok.response.http")[1])
        assert answer == normal
        assert site.actions().count("GET /chat/") == 2
        assert "nocache" in site.seen[2].query
    elif status == 200 and '"status":"error"' in body:  # 10-get-query-stream, >= 1.8.91
        with pytest.raises(llm.ModelError, match=r"says: It appears that nothing"):
            ask(model_kind)
    else:
        assert ask(model_kind) == reference_answer(body)


# -- 2.x -------------------------------------------------------------------------------------

RELEASES_2X = ["2.3", "2.4.71"]
BOT = r"bot 4 \(Customer Support|Default\)"
# what each captured reply does to a prompt that meets it: "answer" (its own text),
# "recovers" (a fresh nonce or cache key, then the normal answer), or an error pattern
OUTCOMES_2X = {
    "02-stream-ok": "answer",
    "04-stream-unicode": "answer",
    "05-stream-long-incomplete": "answer",
    "06-stream-upstream-401": r"^No answer from {host}: the model behind bot 4 \(\w[\w ]+\) "
    r"failed: API Error: Incorrect API key provided: sk-harn\*\*\*\*\*\. You can find your "
    r"API key at https://platform\.openai\.com/account/api-keys\. \(Code: invalid_api_key\)\. The "
    r"model's provider refused the site's own API key: that is for the site's owner to fix, "
    r"not you; try another bot\.$",
    "07-stream-upstream-429": "retried",
    "08-stream-in-stream-error": r"^The answer from {host} broke off after 10 characters \(the "
    r"model behind bot 4 \(\w[\w ]+\) failed: The server had an error while processing your "
    r"request\. Sorry about that! \(Code: server_error\)\); the text above is incomplete\.$",
    "09-stream-response-failed": r"^The answer from {host} broke off after 10 characters "
    r"\(the model behind .* failed: \(Error: The server had an error .*\)\); the text above "
    r"is incomplete\.$",
    "10-stream-upstream-cut": r"^The answer from {host} broke off after 10 characters \(the "
    r"model behind .* failed: Connection Error: transfer closed with outstanding read data "
    r"remaining\); the text above is incomplete\.$",
    "11-stream-fragmented-upstream": "answer",
    "16-cache-bad-nonce": "recovers",
    "17-cache-missing-nonce": "recovers",
    "18-stream-bad-nonce": "recovers",
    "19-stream-missing-nonce": "recovers",
    "22-stream-unknown-cache-key": "recovers",
    "23-stream-reused-cache-key": "recovers",
    "24-stream-expired-cache-key": "recovers",
    "25-stream-missing-cache-key": "recovers",
    "26-cache-empty-message": r"^{host} refused the message as empty: Data to cache \(message "
    r"or image\) cannot be empty\.$",
    "28-turn1-stream": "answer",
    "29-turn2-same-conversation": "answer",
    "30-turn2-new-conversation": "answer",
    "31-turn2-other-session": "answer",
    "32-stream-special-chars": "answer",
    "33-stream-special-chars-turn2": "answer",
    "35-second-bot-stream": "answer",
    "37-stream-foreign-origin": {
        "2.3": "answer",
        "2.4.71": r"^{host} refuses this client for bot 4 \(Customer Support\): This domain "
        r"is not permitted to access the chatbot\.$",
    },
    "38-stream-unknown-bot": r"^{host} has no bot 4 \(\w[\w ]+\) any more \(it says: Invalid "
    r"chatbot specified\.\): run 'llm chatgptfree refresh' to read its current bots\.$",
    "39-stream-missing-session-id": r"^{host} says: Session ID is missing for guest\.$",
    "40-cache-multipart": "answer",
    "41-legacy-1x-action": "never sent",
    "42-get-cache-step": "recovers",
    "01-nonce-refresh": "refresh",
    "43-nonce-refresh-foreign-origin": "refresh",
}
NON_STREAM_2X = {"03", "12", "13", "14", "15", "20", "21", "27", "34", "36"}


def captures_2x() -> list[tuple[str, str]]:
    return [
        (release, path.name.removesuffix(".response.http"))
        for release in RELEASES_2X
        for path in sorted((SAMPLES / release).glob("[0-9][0-9]-*.response.http"))
        if not path.name.endswith((".cache.response.http", ".first-stream.response.http"))
    ]


def request_action(path: Path) -> str:
    found = re.search(r"action = '(\w+)'", path.read_text(encoding="utf-8"))
    return found.group(1) if found else ""


def stream_answer(body: bytes) -> str:
    """The text of a captured 2.x stream, read the simple way."""
    text = []
    for line in body.decode().splitlines():
        if line.startswith("data: ") and '"delta"' in line:
            text.append(json.loads(line[6:])["delta"])
    return "".join(text)


def site_2x(release: str, scenario: str, rejected_refresh: bool = False) -> CannedSite:
    """The release's /chat/ page; the first request of the scenario's kind answered with its
    capture, every other one with the captured normal exchange."""
    folder = SAMPLES / release
    page = (folder / "page-chat.html").read_text(encoding="utf-8")
    action = request_action(folder / f"{scenario}.request.txt")
    pending: dict[str, Canned] = {action: read_capture(folder / f"{scenario}.response.http")}
    if (folder / f"{scenario}.cache.response.http").exists():
        pending[plugin.CACHE_ACTION_2X] = read_capture(folder / f"{scenario}.cache.response.http")
    if action == plugin.NONCE_ACTION_2X:  # reach the refresh: a stream refusing the nonce
        refused = folder / "18-stream-bad-nonce.response.http"
        pending[plugin.STREAM_ACTION_2X] = read_capture(refused)
    normal = {
        plugin.CACHE_ACTION_2X: read_capture(folder / "02-stream-ok.cache.response.http"),
        plugin.STREAM_ACTION_2X: read_capture(folder / "02-stream-ok.response.http"),
        plugin.NONCE_ACTION_2X: read_capture(folder / "01-nonce-refresh.response.http"),
    }

    def route(seen):
        if seen.method == "GET" and "admin-ajax" not in seen.path:
            return Canned(200, {"content-type": "text/html; charset=UTF-8"}, page.encode())
        if seen.action in pending:
            return pending.pop(seen.action)
        return normal.get(seen.action) or Canned(400, {"content-type": "text/html"}, b"0")

    return CannedSite(route)


@pytest.mark.parametrize("model_kind", ["sync", "async"])
@pytest.mark.parametrize(
    ("release", "scenario"),  # not the non-stream action (2.3 to 2.4.0): never sent
    [
        (release, scenario)
        for release, scenario in captures_2x()
        if scenario[:2] not in NON_STREAM_2X
    ],
)
def test_every_2x_capture_gives_the_answer_or_one_sentence(
    monkeypatch, release: str, scenario: str, model_kind: str
):
    outcome = OUTCOMES_2X[scenario]
    outcome = outcome[release] if isinstance(outcome, dict) else outcome
    site = site_2x(release, scenario).install(monkeypatch)
    folder = SAMPLES / release
    if outcome == "answer":
        expected = stream_answer(read_capture(folder / f"{scenario}.response.http").body)
        assert ask(model_kind, ASKED) == expected
        assert site.actions()[-2:] == [plugin.CACHE_ACTION_2X, plugin.STREAM_ACTION_2X]
    elif outcome == "retried":  # a transient failure of the model: one more try
        assert ask(model_kind, ASKED) == NORMAL_2X
        assert site.actions().count(plugin.STREAM_ACTION_2X) == 2
    elif outcome in ("recovers", "refresh"):
        assert ask(model_kind, ASKED) == NORMAL_2X
        actions = site.actions()
        pages, refreshes = actions.count("GET /chat/"), actions.count(plugin.NONCE_ACTION_2X)
        if "cache-key" in scenario:  # the nonce is fine: both steps again, nothing else
            assert (pages, refreshes) == (1, 0)
        elif release == "2.4.71" and scenario != "43-nonce-refresh-foreign-origin":
            assert (pages, refreshes) == (1, 1)  # a fresh nonce, without the page
        else:  # no refresh endpoint (2.3), or it refused: the page again, past caches
            assert pages == 2 and "nocache" in site.seen[-3].query
        assert actions[-2:] == [plugin.CACHE_ACTION_2X, plugin.STREAM_ACTION_2X]
    elif outcome == "never sent":  # a 1.x request meets a 2.x site: the site was upgraded
        test_a_cached_1x_box_on_a_site_now_2x(monkeypatch, release, model_kind)
    else:
        with pytest.raises(llm.ModelError) as caught:
            ask(model_kind, ASKED)
        message = str(caught.value)
        assert re.search(outcome.format(host=HOST), message), message
        assert "\n" not in message and len(message) < 500


def test_a_cached_1x_box_on_a_site_now_2x(monkeypatch, release="2.4.71", model_kind="sync"):
    """The page cache holds a 1.x box; the site has moved to 2.x and answers the 1.x POST
    with '0' (capture 41): the page is read again and the prompt goes the 2.x way."""
    folder = SAMPLES / release
    legacy = read_capture(folder / "41-legacy-1x-action.response.http")
    site = site_2x(release, "02-stream-ok")
    route = site.route
    site.route = lambda seen: legacy if seen.action == plugin.SHORTCODE_ACTION else route(seen)
    site.install(monkeypatch)
    old = plugin.read_chat_boxes(
        (SAMPLES / "1.8.96" / "page-chat.html").read_text(encoding="utf-8"), SITE
    )[0]
    plugin.PAGE_CACHE.put(SITE, "preferred", old, [old])
    assert ask(model_kind, ASKED) == NORMAL_2X
    assert site.actions() == [
        plugin.SHORTCODE_ACTION,
        "GET /chat/",
        plugin.CACHE_ACTION_2X,
        plugin.STREAM_ACTION_2X,
    ]


# -- 2.4.71-providers: chatgptfree.ai's nine bots on six model APIs --------------------------

PROVIDERS_SITE = "http://127.0.0.1:8088/"
SLUGS = {bot_id: plugin.slugify(label) for bot_id, label in plugin.SEED_BOTS}
SOURCES_LISTED = (
    "\n\nSources:\n1. Example Source 1 - https://example.com/source-1\n"
    "2. Example Source 2 - https://example.com/source-2"
)
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEElEQVR4nGP4z8AARAwQCgAf7gP9i18U1AAAAABJRU5ErkJggg=="
)


def providers_captures() -> list[str]:
    return [name for _, name in captures([PROVIDERS])]


def provider_bot(scenario: str) -> str:
    text = (SAMPLES / PROVIDERS / f"{scenario}.request.txt").read_text(encoding="utf-8")
    return re.search(r"#   bot_id = '(\d+)'", text)[1]


def site_providers(scenario: str) -> CannedSite:
    """chatgptfree.ai's home page; each request of the scenario answered with its capture,
    in order (turn 1 first), every other one with the bot's captured normal exchange."""
    folder = SAMPLES / PROVIDERS
    page = (folder / "page-home.html").read_text(encoding="utf-8")
    bot = provider_bot(scenario)
    normal = next(
        n for n in providers_captures() if n.endswith("-stream-ok") and provider_bot(n) == bot
    )
    queues: dict[str, list[Canned]] = {plugin.CACHE_ACTION_2X: [], plugin.STREAM_ACTION_2X: []}
    for step in (f"{scenario}.turn1", scenario):
        if (folder / f"{step}.cache.response.http").exists():
            queues[plugin.CACHE_ACTION_2X].append(
                read_capture(folder / f"{step}.cache.response.http")
            )
            queues[plugin.STREAM_ACTION_2X].append(read_capture(folder / f"{step}.response.http"))
        elif (folder / f"{step}.response.http").exists():  # refused at the cache step
            queues[plugin.CACHE_ACTION_2X].append(read_capture(folder / f"{step}.response.http"))
    fallback = {
        plugin.CACHE_ACTION_2X: read_capture(folder / f"{normal}.cache.response.http"),
        plugin.STREAM_ACTION_2X: read_capture(folder / f"{normal}.response.http"),
    }

    def route(seen):
        if seen.method == "GET" and "admin-ajax" not in seen.path:
            return Canned(200, {"content-type": "text/html; charset=UTF-8"}, page.encode())
        if queues.get(seen.action):
            return queues[seen.action].pop(0)
        return fallback.get(seen.action) or Canned(400, {"content-type": "text/html"}, b"0")

    return CannedSite(route)


def provider_prompts(model_kind: str, bot: str, prompts: list[str], **options) -> list[str]:
    """The texts of a conversation's prompts to one bot of the providers site."""
    name = f"chatgptfree/{SLUGS[bot]}"
    if model_kind == "sync":
        conversation = llm.get_model(name).conversation()
        return [conversation.prompt(p, site=PROVIDERS_SITE, **options).text() for p in prompts]

    async def run() -> list[str]:
        conversation = llm.get_async_model(name).conversation()
        return [
            await conversation.prompt(p, site=PROVIDERS_SITE, **options).text() for p in prompts
        ]

    return asyncio.run(run())


def provider_error(model_kind: str, bot: str, **options) -> str:
    with pytest.raises(llm.ModelError) as caught:
        provider_prompts(model_kind, bot, [ASKED], **options)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 500
    return message


@pytest.mark.parametrize("model_kind", ["sync", "async"])
@pytest.mark.parametrize("scenario", providers_captures())
def test_every_providers_capture_gives_the_answer_or_one_sentence(
    monkeypatch, scenario: str, model_kind: str
):
    site = site_providers(scenario).install(monkeypatch)
    folder = SAMPLES / PROVIDERS
    bot = provider_bot(scenario)
    captured = folder / f"{scenario}.response.http"
    answer = (
        stream_answer(read_capture(captured).body)
        if "event-stream" in captured.read_text(encoding="utf-8", errors="replace")[:2000]
        else ""
    )
    image = llm.Attachment(type="image/png", content=PNG)
    number = int(scenario[:2])
    if scenario.endswith("-upstream-401"):
        assert "that is for the site's owner to fix" in provider_error(model_kind, bot)
    elif scenario.endswith("-upstream-429"):  # retried once, then the normal answer
        assert provider_prompts(model_kind, bot, [ASKED]) == [NORMAL_2X]
        assert site.actions().count(plugin.STREAM_ACTION_2X) == 2
    elif scenario == "24-google-in-stream-error":  # Google swallows it: a short "answer"
        assert provider_prompts(model_kind, bot, [ASKED]) == ["Hello from"]
    elif scenario.endswith("-in-stream-error"):
        assert "broke off after 10 characters" in provider_error(model_kind, bot)
    elif scenario.endswith("-web-search") and number != 46:
        texts = provider_prompts(model_kind, bot, [ASKED], web_search=True)
        assert texts == [answer + SOURCES_LISTED]
        assert any(s.query.get("frontend_web_search_active") == "true" or
                   s.query.get("frontend_google_search_grounding_active") == "true"
                   for s in site.seen)  # fmt: skip
    elif number == 46:  # DeepSeek has no web search: nothing sent
        assert "has no web search" in provider_error(model_kind, bot, web_search=True)
        assert plugin.CACHE_ACTION_2X not in site.actions()
    elif 48 <= number <= 58:
        model = llm.get_model(f"chatgptfree/{SLUGS[bot]}")
        if not model.attachment_types:  # 51-53: DeepSeek and Grok have no image upload
            with pytest.raises(ValueError, match="takes no images"):
                model.prompt("What is this?", attachments=[image], site=PROVIDERS_SITE).text()
            assert site.seen == []
            return
        prompt = "" if number == 54 else "What is in this picture?"

        def ask_image() -> str:
            if model_kind == "sync":
                return model.prompt(prompt, attachments=[image], site=PROVIDERS_SITE).text()

            async def run() -> str:
                async_model = llm.get_async_model(model.model_id)
                response = async_model.prompt(prompt, attachments=[image], site=PROVIDERS_SITE)
                return await response.text()

            return asyncio.run(run())

        if number <= 54:
            assert ask_image() == answer
            [cache] = [s for s in site.seen if s.action == plugin.CACHE_ACTION_2X]
            assert json.loads(cache.form["image_inputs"])[0]["mime_type"] == "image/png"
            assert cache.form["message"] == ("Describe this image." if number == 54 else prompt)
        else:
            with pytest.raises(llm.ModelError) as caught:
                ask_image()
            words = (
                "dropped the message with its images"
                if number == 58
                else "refused the message's images"
            )
            assert words in str(caught.value)
    elif scenario.endswith("-turn2"):
        turn1 = stream_answer(read_capture(folder / f"{scenario}.turn1.response.http").body)
        assert provider_prompts(model_kind, bot, ["My name is Ada.", "What is my name?"]) == [
            turn1,
            answer,
        ]
    else:  # 01-10, 29-40, 47: the answer as captured
        assert provider_prompts(model_kind, bot, [ASKED]) == [answer]
