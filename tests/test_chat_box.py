"""chatgptfree.ai's whole chat box (issue 15): images, web search with its sources, and every
model API's own words, through the real ``llm`` command against the local site set up as
chatgptfree.ai (nine bots on six model APIs), on both transports; and the 2.x reader fed
the captures of ``tests/samples/2.4.71-providers``."""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import llm
import pytest

import llm_chatgptfree as plugin
from tests.aipower_site import AIPowerSite, Fault
from tests.aipower_site.providers import SOURCES
from tests.canned import read_capture
from tests.captures import PROVIDERS, SAMPLES
from tests.conftest import logs_json, run

FOLDER = SAMPLES / PROVIDERS
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEElEQVR4nGP4z8AARAwQCgAf7gP9i18U1AAAAABJRU5ErkJggg=="
)
WEBP = b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00/\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88"
ANSWER = "Hello from the fake upstream. You said: "
GPT4O, GEMINI, DEEPSEEK, CLAUDE, GROK, LLAMA = 25865, 25874, 25873, 25875, 25872, 25870
MODELS = {GPT4O: "gpt-4o-mini", GEMINI: "gemini", DEEPSEEK: "deepseek", CLAUDE: "claude",
          GROK: "grok", LLAMA: "llama", 25871: "gpt-5-nano", 25869: "qwen",
          29624: "perplexity"}  # fmt: skip
SEARCH_BOTS = [25865, 25871, 25874, 25875, 25872, 25870, 25869, 29624]
LISTED = (
    "\n\nSources:\n1. Example Source 1 - https://example.com/source-1\n"
    "2. Example Source 2 - https://example.com/source-2\n"
)


@pytest.fixture
def site(transport: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[AIPowerSite]:
    """chatgptfree.ai's setup on 127.0.0.1, its bots read once (``llm chatgptfree refresh``)."""
    with AIPowerSite("2.4.71", providers=True) as running:
        monkeypatch.setenv("CHATGPTFREE_SITE", running.home_url)
        assert run("chatgptfree", "refresh").exit_code == 0
        running.reset_counts()
        yield running
        assert running.errors == []


@pytest.fixture
def png(tmp_path: Path) -> str:
    path = tmp_path / "photo.png"
    path.write_bytes(PNG)
    return str(path)


def ask(bot: int, *args: str, prompt: str = "What is this?"):
    return run("-m", f"chatgptfree/{MODELS[bot]}", *args, prompt)


def cache_posts(site: AIPowerSite) -> list:
    return site.ajax_requests(plugin.CACHE_ACTION_2X)


# -- images --------------------------------------------------------------------------------


@pytest.mark.parametrize("bot", [GPT4O, GEMINI, CLAUDE])
@pytest.mark.parametrize("async_", [False, True])
def test_an_image_reaches_the_model_of_each_bot_with_image_upload(site, png, bot, async_):
    result = ask(bot, *(["--async"] if async_ else []), "-a", png)
    assert result.exit_code == 0, result.output
    assert result.stdout == ANSWER + "What is this? [image: image/png, 73 bytes]\n"
    [call] = site.calls
    assert [(i["mime_type"], i["size"]) for i in call.images] == [("image/png", 73)]
    [post] = cache_posts(site)
    assert post.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert json.loads(post.fields["image_inputs"]) == [
        {"mime_type": "image/png", "base64_data": base64.b64encode(PNG).decode()}
    ]


def test_attachment_types_follow_each_bots_page(site):
    types = {
        bot: llm.get_model(f"chatgptfree/{name}").attachment_types for bot, name in MODELS.items()
    }
    assert {bot for bot, kinds in types.items() if kinds} == {GPT4O, GEMINI, CLAUDE}
    assert types[CLAUDE] == {"image/jpeg", "image/png", "image/webp"}
    assert llm.get_model("chatgptfree").attachment_types == frozenset()
    site.configure_bot(GROK, imageUploadEnabledUI=True)
    assert run("chatgptfree", "refresh").exit_code == 0
    assert llm.get_model("chatgptfree/grok").attachment_types == {"image/jpeg", "image/png"}


@pytest.mark.parametrize("model", ["chatgptfree/deepseek", "chatgptfree/grok", "chatgptfree"])
def test_a_bot_without_image_upload_refuses_an_image_before_sending(site, png, model):
    result = run("-m", model, "-a", png, "What is this?")
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "Error: " in result.output
    assert "takes no images" in result.output and "-m chatgptfree/gpt-4o-mini" in result.output
    assert site.requests == [] and site.calls == []


def test_the_image_limits_are_said_before_sending(site, png, tmp_path):
    gif = tmp_path / "anim.gif"
    gif.write_bytes(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")
    big = tmp_path / "big.png"
    big.write_bytes(PNG[:16] + bytes(7 * 2**20))
    cases = [
        (["-a", png] * 5, "at most 4 images per message; 5 are attached"),
        (["-a", str(gif)], "takes JPEG, PNG and WebP images only"),
        (["-a", str(big)], "The images come to 7.0 MB, and the site takes a message of 8.0 MB"),
    ]
    for args, words in cases:
        result = ask(GPT4O, *args)
        assert result.exit_code == 1 and words in result.output, result.output
        assert result.output.count("\n") == 1
    assert site.requests == []


def test_xai_takes_no_webp_even_with_image_upload(site, tmp_path):
    site.configure_bot(GROK, imageUploadEnabledUI=True)
    assert run("chatgptfree", "refresh").exit_code == 0
    site.reset_counts()
    webp = tmp_path / "x.webp"
    webp.write_bytes(WEBP)
    result = ask(GROK, "-a", str(webp))
    assert result.exit_code == 1 and "takes JPEG and PNG images only" in result.output
    assert cache_posts(site) == [] and site.calls == []


def test_the_sites_post_max_size_is_one_sentence_not_a_refresh(site, png):
    site.post_max_size = 200  # the image POST vanishes: admin-ajax answers '0'
    result = ask(GPT4O, "-a", png)
    assert result.exit_code == 1
    assert "dropped the message with its images (admin-ajax answered '0')" in result.output
    assert len(cache_posts(site)) == 1 and site.page_gets == 1  # no page read again


@pytest.mark.parametrize(
    ("capture", "words"),
    [("55-image-wrong-type", "Invalid image type. Allowed: JPG, PNG, WEBP. Send a JPEG"),
     ("56-image-bad-base64", "Invalid image data provided. The image data did not pass"),
     ("57-image-too-many", "Too many images uploaded. Max images: 4. Send 4 images at most.")],
)  # fmt: skip
def test_the_sites_image_refusals_are_sentences(capture, words):
    canned = read_capture(FOLDER / f"{capture}.response.http")
    reply = plugin.Reply(canned.status, "Bad Request", canned.headers, "http://h.test/")
    error = plugin.error_of_json_2x("h.test", reply, canned.body.decode())
    assert str(error).startswith("h.test refused the message's images: ") and words in str(error)


def test_an_image_with_an_empty_prompt_still_asks_something(site, png):
    result = ask(GPT4O, "-a", png, prompt="")
    assert result.exit_code == 0
    assert result.stdout == ANSWER + "Describe this image. [image: image/png, 73 bytes]\n"
    assert site.calls[-1].images  # capture 54: the site alone would send no user turn


def test_a_later_turn_sends_the_earlier_image_again_and_says_which(site, png):
    assert ask(GPT4O, "-a", png).exit_code == 0
    result = run("-c", "What colour is it?")
    assert result.exit_code == 0, result.output
    message = site.calls[-1].body["input"][-1]["content"][0]["text"]
    assert message.startswith("User: What is this?\n[Image 1 is attached.]\nAssistant: ")
    assert len(site.calls[-1].images) == 1


def test_earlier_images_beyond_four_are_marked_not_sent_again(site, png):
    assert ask(GPT4O, "-a", png, "-a", png, "-a", png).exit_code == 0
    result = run("-c", "-a", png, "-a", png, "And these?")
    assert result.exit_code == 0, result.output
    message = site.calls[-1].body["input"][-1]["content"][0]["text"]
    assert message.count("[An image was attached here; it is not sent again.]") == 1
    assert "[Image 4 is attached.]" in message and len(site.calls[-1].images) == 4


@pytest.fixture
def image_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()

        def do_GET(self):  # noqa: N802
            body = PNG if self.path == "/p.png" else PNG + bytes(7 * 2**20)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_an_image_by_url_is_fetched_within_bounds_never_sent_as_a_url(site, image_server):
    result = ask(CLAUDE, "-a", f"{image_server}/p.png")
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("[image: image/png, 73 bytes]\n")
    assert "http" not in cache_posts(site)[0].fields["image_inputs"]
    result = ask(CLAUDE, "-a", f"{image_server}/big.png")
    assert result.exit_code == 1 and "is over 6.0 MB" in result.output
    assert len(cache_posts(site)) == 1


# -- web search and its sources ------------------------------------------------------------


@pytest.mark.parametrize("bot", SEARCH_BOTS)
def test_web_search_prints_the_answer_then_each_source_once(site, bot):
    result = ask(bot, "-o", "web_search", "true", prompt="What is new today?")
    assert result.exit_code == 0, result.output
    assert result.stdout == ANSWER + "What is new today?" + LISTED
    assert site.calls[-1].web_search is True
    [stream] = site.ajax_requests(plugin.STREAM_ACTION_2X)
    flag = (
        "frontend_google_search_grounding_active" if bot == GEMINI else "frontend_web_search_active"
    )
    assert stream.query[flag] == "true"
    [entry] = logs_json("-n", "1")
    sources = entry["response_json"]["sources"]
    assert [(s["title"], s["url"]) for s in sources] == [(t, u) for u, t in SOURCES]


def test_web_search_from_the_async_api(site):
    async def answer() -> tuple[str, dict]:
        response = llm.get_async_model("chatgptfree/llama").prompt("Hi", web_search=True)
        return await response.text(), response.response_json

    text, details = asyncio.run(answer())
    assert text == ANSWER + "Hi" + LISTED.rstrip("\n")
    assert len(details["sources"]) == 2 and details["sources"][0]["cited_text"]


def test_deepseek_has_no_web_search_and_nothing_is_sent(site):
    result = ask(DEEPSEEK, "-o", "web_search", "true")
    assert result.exit_code == 1 and "has no web search" in result.output
    assert site.ajax_requests() == []  # the page only: the prompt was never sent


def test_a_default_on_globe_toggle_is_followed_and_can_be_turned_off(site):
    site.configure_bot(GPT4O, webToggleDefaultOn=True)
    assert ask(GPT4O, prompt="Hi").stdout == ANSWER + "Hi" + LISTED
    assert site.calls[-1].web_search is True
    assert ask(GPT4O, "-o", "web_search", "false", prompt="Hi").stdout == ANSWER + "Hi\n"
    assert site.calls[-1].web_search is False and site.calls[-1].search_asked is False


def test_sources_are_never_replayed_to_the_model(site):
    assert ask(CLAUDE, "-o", "web_search", "true", prompt="What is new?").exit_code == 0
    assert run("-c", "Tell me more").exit_code == 0
    sent = json.dumps(site.calls[-1].body)
    assert "Sources:" not in sent and "example.com/source" not in sent
    assert "Assistant: Hello from the fake upstream. You said: What is new?\\nUser:" in sent


def test_web_search_is_documented_in_the_models_options():
    result = run("models", "--options", "-m", "chatgptfree/claude")
    assert "web_search: boolean" in result.output and "globe toggle" in result.output


# -- every API's own words -----------------------------------------------------------------


@pytest.mark.parametrize("bot", [GPT4O, GEMINI, DEEPSEEK, CLAUDE, GROK, LLAMA])
def test_every_apis_rate_limit_is_retried_then_try_again_later(site, bot):
    site.fault = Fault.UPSTREAM_429.at(bot)
    result = ask(bot, prompt="Hi")
    assert result.exit_code == 1
    assert result.output.endswith("busy or limits the site: try again later.\n"), result.output
    assert len(site.calls) == 2  # one retry before any text


@pytest.mark.parametrize("bot", [GPT4O, GEMINI, DEEPSEEK, CLAUDE, GROK, LLAMA])
def test_a_bad_key_is_the_sites_fault(site, bot):
    site.fault = Fault.UPSTREAM_401.at(bot)
    result = ask(bot, prompt="Hi")
    assert result.exit_code == 1 and "that is for the site's owner to fix" in result.output
    assert len(site.calls) == 1


@pytest.mark.parametrize(
    ("bot", "said"),
    [(GPT4O, "Incomplete: max_output_tokens"), (GROK, "Incomplete: max_output_tokens"),
     (LLAMA, "Incomplete: max_output_tokens"),
     (CLAUDE, "Claude stopped because the maximum output token limit was reached")],
)  # fmt: skip
def test_an_answer_cut_at_the_token_limit_says_so_on_stderr(site, bot, said):
    site.fault = Fault.INCOMPLETE.at(bot)
    result = ask(bot, prompt="Hi")
    assert result.exit_code == 0 and result.stdout.startswith(ANSWER)
    assert result.stderr == (
        f"\nThe answer stopped at the model's output token limit (127.0.0.1:{site.port} "
        f"says: {said}): it is incomplete.\n"
    )
    [entry] = logs_json("-n", "1")
    assert entry["response_json"]["stopped"] == "max_tokens"


@pytest.mark.parametrize("bot", [GEMINI, DEEPSEEK])
def test_google_and_deepseek_say_nothing_of_a_token_limit(site, bot):
    site.fault = Fault.INCOMPLETE.at(bot)
    result = ask(bot, prompt="Hi")
    assert result.exit_code == 0 and result.stderr == ""


def test_anthropics_model_snapshot_is_the_resolved_model(site):
    assert ask(CLAUDE, prompt="Hi").exit_code == 0
    [entry] = logs_json("-n", "1")
    assert entry["resolved_model"].startswith("claude-3-5-haiku-20241022 via ")


# -- the reader, fed the captures ----------------------------------------------------------

BOX = plugin.ChatBox("2.x", "http://h.test/", "http://h.test/wp-admin/admin-ajax.php", "n", "6",
                     "1", label="Bot")  # fmt: skip


def read(capture: str, notes: list | None = None) -> plugin.AnswerReader2:
    reader = plugin.AnswerReader2("h.test", BOX, None if notes is None else notes.append)
    body = read_capture(FOLDER / f"{capture}.response.http").body
    for start in range(0, len(body), 97):  # split anywhere
        reader.feed(body[start : start + 97])
    reader.finish()
    return reader


@pytest.mark.parametrize(
    ("capture", "quoted"),
    [("41-openai-web-search", True), ("42-google-web-search", False),
     ("43-anthropic-web-search", True), ("44-xai-web-search", False),
     ("45-openrouter-web-search", True)],
)  # fmt: skip
def test_each_apis_citations_become_each_source_once(capture, quoted):
    notes: list[str] = []
    reader = read(capture, notes)
    assert reader.done and reader.failure is None
    sources = reader.details()["sources"]
    assert [(s["title"], s["url"]) for s in sources] == [(t, u) for u, t in SOURCES]
    assert all(("cited_text" in s) is quoted for s in sources)
    assert notes == ["Searching the web…"]  # once, however many status events say so


def test_geminis_search_suggestions_are_kept_without_their_html():
    assert read("42-google-web-search").suggestions == ["What is new today?"]


def test_status_events_empty_deltas_and_ids_never_show(capsys):
    for capture in ("04-deepseek-stream-ok", "07-llama-stream-ok", "06-grok-stream-ok"):
        reader = read(capture)
        assert reader.chars == len(ANSWER + 'Hello, what\'s 2+2? Answer "briefly".')
    assert read("05-claude-stream-ok").model == "claude-3-5-haiku-20241022"
    assert read("06-grok-stream-ok").response_id.count("-") == 4  # xAI's UUID


def test_a_message_with_images_is_multipart_on_the_wire():
    request = plugin.Request("POST", "http://h.test/", {}, {"a": "1", "b": "x y"}, True)
    body, headers = plugin.request_content(request)
    boundary = headers["Content-Type"].partition("boundary=")[2]
    assert (
        body
        == (
            f'--{boundary}\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="b"\r\n\r\nx y\r\n'
            f"--{boundary}--\r\n"
        ).encode()
    )


def test_the_image_plan_resends_earlier_images_and_never_claims_one_not_sent():
    one, two = llm.Attachment(content=PNG), llm.Attachment(content=PNG + b"2")
    turns = [("user", "A", [one]), ("assistant", "B", []), ("user", "C", [two])]
    texts, sent = plugin.image_plan(turns, takes_images=True)
    assert texts == [("user", "A\n[Image 1 is attached.]"), ("assistant", "B"),
                     ("user", "C\n[Image 2 is attached.]")]  # fmt: skip
    assert sent == [one, two]
    texts, sent = plugin.image_plan(turns[:2] + [("user", "C", [])], takes_images=False)
    assert texts[0] == ("user", "A\n[An image was attached here; it is not sent again.]")
    assert sent == []
    assert plugin.image_plan([("user", "Q", [one])], True) == ([("user", "Q")], [one])


def test_the_token_limit_line_from_the_async_command(site):
    site.fault = Fault.INCOMPLETE.at(CLAUDE)
    result = ask(CLAUDE, "--async", prompt="Hi")
    assert result.exit_code == 0 and "output token limit" in result.stderr
    assert result.stderr.count("\n") == 2  # the note on a line of its own


def test_llm_chat_lists_sources_after_each_answer_and_never_replays_them(site):
    result = run("chat", "-m", "chatgptfree/gemini", "-o", "web_search", "true",
                 input="What is new?\nAnd then?\nquit\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.count("Sources:\n1. Example Source 1") == 2
    sent = json.dumps(site.calls[-1].body)
    assert "Sources:" not in sent and "What is new?" in sent


def test_a_setting_makes_web_search_the_default(site):
    assert run("models", "options", "set", "chatgptfree/llama", "web_search", "true").exit_code == 0
    assert ask(LLAMA, prompt="Hi").stdout == ANSWER + "Hi" + LISTED
    assert ask(LLAMA, "-o", "web_search", "false", prompt="Hi").stdout == ANSWER + "Hi\n"
