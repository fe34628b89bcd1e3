"""The fault matrix: every row of the protocol's emulator checklist, through the CLI and
the async API. Each gives the answer or one ``llm.ModelError`` sentence: never a
traceback, a hang or a silent empty answer."""

from __future__ import annotations

import asyncio
import re

import llm
import pytest

from tests.aipower_site import AIPowerSite, unresponsive_port
from tests.captures import SAMPLES
from tests.conftest import async_model, logs_json, run

ANSWER = "Hello from the fake upstream. You said: "


def cli_outcome(site, *options: str, url: str | None = None) -> tuple[int, str]:
    result = run("-m", "chatgptfree", "-o", "site", url or site.chat_url, *options, "Hi")
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def async_outcome(site, url: str | None = None, **options) -> str:
    async def ask() -> str:
        response = async_model().prompt("Hi", site=url or site.chat_url, **options)
        return await response.text()

    try:
        return asyncio.run(ask())
    except llm.ModelError as error:
        return f"Error: {error}\n"


def assert_one_sentence(output: str, pattern: str) -> None:
    assert output.endswith("\n") and "Error: " in output, output
    error = "Error: " + output.split("Error: ", 1)[1].rstrip("\n")
    assert "\n" not in error, output
    assert re.search(pattern, error), error
    assert len(error) < 400


# name -> (how to set the site up, the expected error sentence as a regular expression)
ERRORS = {
    "cloudflare page 403": (
        lambda s: setattr(s, "page_variant", "cloudflare_403"),
        r"answered with a Cloudflare challenge \(HTTP 403 Forbidden\): open the site in "
        r"a browser, then save its cf_clearance cookie with 'llm keys set chatgptfree'",
    ),
    "cloudflare page 503": (
        lambda s: setattr(s, "page_variant", "cloudflare_503"),
        r"Cloudflare challenge \(HTTP 503 Service Unavailable\)",
    ),
    "cloudflare on admin-ajax": (
        lambda s: setattr(s, "fault", "cloudflare_403"),
        r"Cloudflare challenge \(HTTP 403 Forbidden\)",
    ),
    "no chat box": (
        lambda s: setattr(s, "page_variant", "no_chatbox"),
        r"No AI Power chat box on http://127\.0\.0\.1:\d+/chat/: point -o site \(or "
        r"CHATGPTFREE_SITE\) at a page that shows the chat\.$",
    ),
    "admin-ajax 0 with HTTP 200": (
        lambda s: setattr(s, "fault", "zero_200"),
        r"has no AI Power chat handler \(admin-ajax answered '0'\)",
    ),
    "stale nonce even after a refresh": (
        lambda s: setattr(s, "page_nonce_override", "0123456789"),
        r"rejected a freshly scraped nonce too: the site serves a stale cached page\.",
    ),
    "token limit": (
        lambda s: setattr(s, "fault", "token_limit"),
        r"says: You have reached your token limit\.$",
    ),
    "streamed error words": (
        lambda s: setattr(s, "fault", "upstream_401"),
        r"No answer from 127\.0\.0\.1:\d+: the site's model failed: Incorrect API key",
    ),
    "error frame": (
        lambda s: setattr(s, "fault", "stream_error"),
        r"broke off after \d+ characters \(the site's model failed: The server had an "
        r"error while processing your request\. Sorry about that!\); the text above is "
        r"incomplete\.$",
    ),
    "[LIMITED]": (
        lambda s: setattr(s, "fault", "limited"),
        r"the site stopped the answer",
    ),
    "no [DONE] nor finish reason": (
        lambda s: setattr(s, "fault", "upstream_cut"),
        r"broke off after \d+ characters \(the stream ended without a finish signal\); "
        r"the text above is incomplete\.$",
    ),
    "connection cut mid-stream": (
        lambda s: setattr(s, "fault", "cut"),
        r"broke off after \d+ characters \(.*\); the text above is incomplete\.$",
    ),
    "HTTP 500": (
        lambda s: setattr(s, "fault", "http_500"),
        r"admin-ajax answered HTTP 500 Internal Server Error",
    ),
    "WordPress critical error": (
        lambda s: setattr(s, "fault", "wp_critical"),
        r"admin-ajax answered HTTP 500 Internal Server Error: .*critical error",
    ),
    "HTTP 503 twice": (
        lambda s: setattr(s, "fault", "http_503"),
        r"admin-ajax answered HTTP 503 Service Unavailable twice: the site is down or "
        r"overloaded\. Try again later\.$",
    ),
    "reset twice": (
        lambda s: setattr(s, "fault", "reset"),
        r"dropped the connection twice before answering\. Try again\.$",
    ),
    "empty answer": (
        lambda s: setattr(s, "fault", "empty"),
        r"sent an empty answer\. Try again\.$",
    ),
    "server's own error": (
        lambda s: setattr(s, "fault", "no_ai"),
        r"says: Unable to initialize the AI instance\. Please make sure the API key is "
        r"valid\.$",
    ),
}


@pytest.mark.parametrize("fault", list(ERRORS))
def test_fault_gives_one_sentence_on_the_command_line(site, fault):
    set_up, pattern = ERRORS[fault]
    set_up(site)
    code, output = cli_outcome(site)
    assert code == 1
    assert_one_sentence(output, pattern)


@pytest.mark.parametrize("fault", list(ERRORS))
def test_fault_gives_one_sentence_from_the_async_api(site, fault):
    set_up, pattern = ERRORS[fault]
    set_up(site)
    assert_one_sentence(async_outcome(site), pattern)


def test_json_mode_faults(site):
    site.stream = False
    for fault, pattern in [
        ("token_limit", r"says: You have reached your token limit\.$"),
        ("upstream_401", r"says: Incorrect API key provided"),
        ("word_banned", r"says: Your message contains prohibited words\."),
        ("ip_banned", r"says: You are not allowed to access this feature\.$"),
        ("empty", r"sent an empty answer"),
    ]:
        site.faults.append(fault)
        code, output = cli_outcome(site)
        assert code == 1
        assert_one_sentence(output, pattern)


def test_the_partial_answer_stays_on_screen_when_the_stream_breaks(site):
    site.fault = "cut"
    code, output = cli_outcome(site)
    assert code == 1
    shown, error = output.split("Error: ", 1)
    assert shown and ANSWER.startswith(shown.strip())
    assert f"broke off after {len(shown.rstrip(chr(10)))} characters" in error
    assert site.ajax_posts == 1, "nothing is retried once text has been shown"


@pytest.mark.parametrize(
    "variant", ["minified", "entities", "several", "widget_only", "params_only"]
)
def test_page_markup_variants_answer(site, variant):
    site.page_variant = variant
    code, output = cli_outcome(site)
    assert (code, output) == (0, ANSWER + "Hi\n")
    form = site.requests[-1].form
    if variant == "widget_only":
        assert form["action"] == "wpaicg_chatbox_message"
        assert form["chatbot_identity"] == "widget"
    if variant == "several":
        assert form["bot_id"] == "4" and form["chatbot_identity"] == "custom_bot_4"


@pytest.mark.parametrize("release", ["1.8.85", "1.8.96"])
def test_an_expired_nonce_is_refreshed_once(release):
    with AIPowerSite(release) as site:
        assert cli_outcome(site) == (0, ANSWER + "Hi\n")
        site.rotate_nonce()  # a day later: the cached nonce has expired
        assert cli_outcome(site) == (0, ANSWER + "Hi\n")
        assert (site.page_gets, site.ajax_posts) == (2, 3)
        refresh = [r for r in site.requests if r.method == "GET"][-1]
        assert "wpaicg_nocache" in refresh.query
        assert refresh.headers.get("cache-control") == "no-cache"


@pytest.mark.parametrize("status", ["http_502", "http_503", "http_504", "reset"])
def test_a_transient_failure_is_retried_once(site, status):
    site.faults.append(status)
    assert cli_outcome(site) == (0, ANSWER + "Hi\n")
    assert site.ajax_posts == 2


def test_transient_page_failures_are_retried_too(site):
    site.page_faults.append("http_503")
    assert cli_outcome(site) == (0, ANSWER + "Hi\n")
    assert site.page_gets == 2


def test_a_server_slower_than_the_timeout(site):
    site.fault, site.slow_seconds = "slow", 3
    code, output = cli_outcome(site, "-o", "timeout", "0.5")
    assert code == 1
    assert_one_sentence(
        output,
        r"127\.0\.0\.1:\d+ did not answer within 0\.5 s\. Try again later, or wait "
        r"longer with -o timeout 300\.$",
    )


def test_a_stream_that_stalls_after_some_text(site):
    site.fault, site.slow_seconds = "stall", 3
    code, output = cli_outcome(site, "-o", "timeout", "0.5")
    assert code == 1
    assert_one_sentence(output, r"broke off after \d+ characters \(no data for 0\.5 s\)")


def test_a_connect_timeout():
    with unresponsive_port() as url:
        result = run("-m", "chatgptfree", "-o", "site", url, "-o", "timeout", "0.5", "Hi")
    assert result.exit_code == 1
    assert_one_sentence(result.output, r"did not answer within 0\.5 s")


def test_an_unreachable_site(site):
    url = site.chat_url
    site.stop()
    result = run("-m", "chatgptfree", "-o", "site", url, "Hi")
    assert result.exit_code == 1
    assert_one_sentence(
        result.output, r"^Error: Could not reach http://127\.0\.0\.1:\d+/chat/: .+\.$"
    )


def test_invalid_utf8_keeps_the_answer(site):
    site.fault = "invalid_utf8"
    code, output = cli_outcome(site)
    assert code == 0 and "\ufffd" in output


def test_a_10_mb_answer(site):
    site.fault, site.big_answer_bytes = "big", 10_000_000
    model = llm.get_model("chatgptfree")
    text = model.prompt("Hi", site=site.chat_url).text()
    assert len(text.encode()) >= 9_900_000


def test_openrouter_comments(site):
    site.fault = "openrouter"
    assert cli_outcome(site) == (0, ANSWER + "Hi\n")


def test_banned_notice_with_an_answer_is_logged(site):
    site.fault = "ip_banned"
    assert cli_outcome(site) == (0, ANSWER + "Hi\n")
    [entry] = logs_json("-n", "1")
    assert entry["response_json"]["notice"] == ("You are not allowed to access this feature.")


def test_the_real_400_zero_of_admin_ajax(site):
    site.replay_next(SAMPLES / "1.8.96" / "16-no-action.response.http")
    code, output = cli_outcome(site)
    assert code == 1
    assert_one_sentence(output, r"has no AI Power chat handler")


def test_timeouts_and_an_unreachable_site_from_the_async_api(site):
    site.fault, site.slow_seconds = "slow", 3
    assert_one_sentence(async_outcome(site, timeout=0.5), r"did not answer within 0\.5 s")
    site.fault = "stall"
    assert_one_sentence(async_outcome(site, timeout=0.5), r"\(no data for 0\.5 s\)")
    site.fault = None
    site.stream = False
    site.faults.append("token_limit")
    assert_one_sentence(async_outcome(site), r"says: You have reached your token limit\.$")
    with unresponsive_port() as url:
        assert_one_sentence(async_outcome(site, url=url, timeout=0.5), r"did not answer within")
    url = site.chat_url
    site.stop()
    assert_one_sentence(async_outcome(site, url=url), r"^Error: Could not reach 127\.0\.0\.1:\d+")


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_stream_in_7_byte_pieces_reads_the_same(site, kind):
    site.chunk_size = 7  # frames and UTF-8 characters split across reads, as sample 26
    prompt = "Ünïcödé → 日本語, emoji 🙂👍🏽"
    if kind == "sync":
        answer = llm.get_model("chatgptfree").prompt(prompt, site=site.chat_url).text()
    else:

        async def ask() -> str:
            return await async_model().prompt(prompt, site=site.chat_url).text()

        answer = asyncio.run(ask())
    assert answer == ANSWER + prompt
