"""The fault matrix: every fault the local site can play, for both generations, through
the CLI (both transports) and the async API. Each gives the answer or one sentence that
says what to do: never a traceback, a hang or a silent empty answer.

``python -m tests.aipower_site --release 2.4.71 --fault quota`` plays any row by hand.
"""

from __future__ import annotations

import asyncio
import re

import llm
import pytest

from tests.aipower_site import AIPowerSite, Fault, unresponsive_port
from tests.conftest import async_model, logs_json, run

ANSWER = "Hello from the fake upstream. You said: "
HOST = r"127\.0\.0\.1:\d+"
BOT = r"bot 4 \(Customer Support\)"
CLOUDFLARE = (
    HOST + r" answered with a Cloudflare challenge \(HTTP 40?3 Forbidden\): pass it in a "
    r"browser window with 'llm chatgptfree clearance 127\.0\.0\.1:\d+', or by hand: save a "
    r"browser's Cookie header with 'llm chatgptfree cookies set 127\.0\.0\.1:\d+' and its "
    r"User-Agent in CHATGPTFREE_USER_AGENT \(and install llm-chatgptfree\[browser\]"
)


def cli_outcome(site: AIPowerSite, *options: str, url: str | None = None) -> tuple[int, str]:
    result = run("-m", "chatgptfree", "-o", "site", url or site.chat_url, *options, "Hi")
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def async_outcome(site: AIPowerSite, url: str | None = None, **options) -> str:
    async def ask() -> str:
        response = async_model().prompt("Hi", site=url or site.chat_url, **options)
        return await response.text()

    try:
        return asyncio.run(ask())
    except llm.ModelError as error:
        return f"Error: {error}\n"


def assert_one_sentence(output: str, pattern: str) -> None:
    assert output.endswith("\n") and "Error: " in output, output
    before, error = output.split("Error: ", 1)
    assert before == "" or before.endswith("\n"), "the partial answer has a line of its own"
    error = "Error: " + error.rstrip("\n")
    assert "\n" not in error, output
    assert re.search(pattern, error), error
    assert len(error) < 600


# fault -> (generations, the expected error sentence as a regular expression)
ERRORS = {
    Fault.CLOUDFLARE_403: (("1.x", "2.x"), CLOUDFLARE),
    Fault.HTTP_500: (("1.x", "2.x"), HOST + r"'s admin-ajax answered HTTP 500 Internal Server "
                     r"Error\.$"),
    Fault.WP_CRITICAL: (("1.x", "2.x"), r"admin-ajax answered HTTP 500 Internal Server Error: "
                        r"'There has been a critical error on this website\.'\.$"),
    Fault.HTTP_503: (("1.x", "2.x"), r"admin-ajax answered HTTP 503 Service Unavailable twice: "
                     r"the site is down or overloaded\. Try again later\.$"),
    Fault.RESET: (("1.x", "2.x"), r"dropped the connection twice before answering\. Try again\.$"),
    Fault.ZERO_200: (("1.x", "2.x"), HOST + r" has no AI Power chat handler"),
    Fault.EMPTY: (("1.x", "2.x"), r"sent an empty answer\. Try again\.$"),
    Fault.CUT: (("1.x", "2.x"), r"The answer from " + HOST + r" broke off after 10 characters "
                r"\(.*\); the text above is incomplete\.$"),
    Fault.UPSTREAM_CUT: (("1.x", "2.x"), r"broke off after 10 characters \(.*\); the text above "
                         r"is incomplete\.$"),
    Fault.STREAM_ERROR: (("1.x", "2.x"), r"broke off after 10 characters \(.*The server had an "
                         r"error while processing your request\. Sorry about that!.*\); the text "
                         r"above is incomplete\.$"),
    Fault.UPSTREAM_401: (("1.x", "2.x"), r"No answer from " + HOST + r": the (site's model|model "
                         r"behind " + BOT + r") failed: (API Error: )?Incorrect API key provided"),
    Fault.NO_AI: (("1.x",), r"says: Unable to initialize the AI instance\. Please make sure the "
                  r"API key is valid\.$"),
    Fault.LIMITED: (("1.x",), r"No answer from " + HOST + r": the site stopped the answer: "
                    r"Something went wrong\.$"),
    Fault.TOKEN_LIMIT: (("1.x",), HOST + r" says: You have reached your token limit\.$"),
    Fault.QUOTA: (("2.x",), HOST + r" says: You have reached your quota for this period\. That "
                  r"is the site's limit for " + BOT + r": try another bot, or try again later\.$"),
    Fault.GUEST_DISABLED: (("2.x",), r"says: Access disabled for guests\. That is the site's "
                           r"limit for " + BOT),
    Fault.IP_BANNED: (("2.x",), r"says: Access from your IP address has been blocked\. Try from "
                      r"another network, or through a proxy \(-o proxy\)\.$"),
    Fault.WORD_BANNED: (("2.x",), r"says: Sorry, your message could not be sent as it contains "
                        r"prohibited words\. Rephrase the prompt\.$"),
    Fault.FLAGGED: (("2.x",), r"says: Your message was flagged by the moderation system and "
                    r"could not be sent\. Rephrase the prompt\.$"),
    Fault.API_KEY_MISSING: (("2.x",), HOST + r"'s " + BOT + r" is not set up \(API key missing "
                            r"for OpenAI\.\): try another bot\.$"),
    Fault.CONNECTION_ERROR: (("2.x",), r"No answer from " + HOST + r": the model behind " + BOT
                             + r" failed: Connection Error: .*\. Try again later\.$"),
    Fault.RESPONSE_FAILED: (("2.x",), r"broke off after 10 characters \(the model behind " + BOT
                            + r" failed: \(Error: The server had an error"),
    Fault.NO_DONE: (("2.x",), r"broke off after \d+ characters \(the stream ended without its "
                    r"done event\); the text above is incomplete\.$"),
    Fault.STATUS_ONLY: (("2.x",), HOST + r"'s " + BOT + r" sent an empty answer\. Try again\.$"),
    Fault.CACHE_NONCE: (("2.x",), HOST + r" rejected a fresh nonce too: the site serves a stale "
                        r"cached page\. Try again later, or point -o site at a page that is not "
                        r"cached\.$"),
    Fault.STREAM_NONCE: (("2.x",), r"rejected a fresh nonce too"),
    Fault.KEY_LOST: (("2.x",), HOST + r" lost the message between its two steps twice \(Message "
                     r"not found in cache\.\): try again\.$"),
    Fault.KEY_EXPIRED: (("2.x",), r"lost the message between its two steps twice \(Cached "
                        r"message has expired\.\)"),
    Fault.CORS_DENIED: (("2.x",), HOST + r" refuses this client: This domain is not permitted "
                        r"to access the chatbot\.$"),
}  # fmt: skip
PAGE_ERRORS = {
    Fault.CLOUDFLARE_503: CLOUDFLARE.replace("40?3 Forbidden", "503 Service Unavailable"),
    Fault.EXPIRED_LINK_403: HOST + r" \(the page\) answered HTTP 403 Forbidden: 'The link you "
    r"followed has expired\.'\.$",
    Fault.MINUS_ONE_403: HOST + r" \(the page\) answered HTTP 403 Forbidden: '-1'\.$",
    Fault.REDIRECT_FOREIGN: r"redirects to http://127\.0\.0\.1:\d+/chat/.*, another site; not "
    r"following\. If you trust it, use it directly: -o site http://",
}
ANSWERED = [
    Fault.FRAGMENTED, Fault.BOM, Fault.CR_ONLY, Fault.OPENROUTER, Fault.DONE_OPEN,
    Fault.OVERSTATED_LENGTH, Fault.INCOMPLETE, Fault.CITATIONS, Fault.UNKNOWN_EVENT,
]  # fmt: skip


def rows(table: dict) -> list:
    return [
        pytest.param(generation, fault, id=f"{generation}-{fault}")
        for fault, (generations, _) in table.items()
        for generation in generations
    ]


def local_site(generation: str) -> AIPowerSite:
    return AIPowerSite("1.8.96" if generation == "1.x" else "2.4.71")


@pytest.mark.parametrize(("generation", "fault"), rows(ERRORS))
def test_fault_gives_one_sentence_on_the_command_line(transport, generation, fault):
    with local_site(generation) as site:
        site.fault = fault
        code, output = cli_outcome(site)
    assert code == 1
    assert_one_sentence(output, ERRORS[fault][1])


@pytest.mark.parametrize(("generation", "fault"), rows(ERRORS))
def test_fault_gives_one_sentence_from_the_async_api(generation, fault):
    with local_site(generation) as site:
        site.fault = fault
        assert_one_sentence(async_outcome(site), ERRORS[fault][1])


@pytest.mark.parametrize("fault", list(PAGE_ERRORS))
def test_page_faults_give_one_sentence(either, fault):
    either.page_faults = [fault] * 3
    code, output = cli_outcome(either)
    assert code == 1
    assert_one_sentence(output, PAGE_ERRORS[fault])
    assert either.page_gets <= 2


@pytest.mark.parametrize(
    ("release", "fault"),
    [(release, fault) for fault in ANSWERED for release in ("1.8.96", "2.4.71")
     if ("2.x" if release == "2.4.71" else "1.x") in fault.generations],
)  # fmt: skip
def test_faults_that_still_give_the_answer(release, fault, transport):
    with AIPowerSite(release) as either:
        either.fault = fault
        result = run("-m", "chatgptfree", "-o", "site", either.chat_url, "Hi")
    sources = "\n\nSources:\n1. Example - https://example.com/source"  # listed after it
    shown = sources if fault == Fault.CITATIONS else ""
    assert (result.exit_code, result.stdout) == (0, ANSWER + "Hi" + shown + "\n")
    token_limit = "output token limit" in result.stderr
    assert token_limit is (fault == Fault.INCOMPLETE), result.stderr


def test_no_chat_box(either):
    either.page_variant = "no_chatbox"
    code, output = cli_outcome(either)
    assert code == 1
    assert_one_sentence(
        output,
        r"No AI Power chat box on http://127\.0\.0\.1:\d+/chat/: point -o site \(or "
        r"CHATGPTFREE_SITE\) at a page that shows the chat\.$",
    )


def test_a_bot_the_page_does_not_have_is_refused_with_the_ids_it_has(site2):
    run("chatgptfree", "sites", "add", "local", site2.chat_url, "--bot", "999")
    result = run("-m", "chatgptfree/local", "Hi")
    assert result.exit_code == 1
    assert_one_sentence(
        result.output,
        r"http://127\.0\.0\.1:\d+/chat/ has no bot 999; its chat boxes: 4 \(Customer Support\), "
        r"5 \(Second Bot\)\. Run 'llm chatgptfree refresh' to update the list of bots\.$",
    )


def test_the_partial_answer_stays_on_screen_when_the_stream_breaks(either):
    either.fault = Fault.CUT
    code, output = cli_outcome(either)
    assert code == 1
    shown, error = output.split("Error: ", 1)
    assert shown.endswith("\n") and ANSWER.startswith(shown.rstrip("\n"))
    assert f"broke off after {len(shown.rstrip(chr(10)))} characters" in error
    chats = [r for r in either.requests if "chat" in str(r.form.get("action", "")) + str(
        r.query.get("action", ""))]  # fmt: skip
    assert len(chats) == 1, "nothing is retried once text has been shown"


@pytest.mark.parametrize("fault", [Fault.HTTP_502, Fault.HTTP_503, Fault.HTTP_504, Fault.RESET])
def test_a_transient_failure_is_retried_once(either, fault):
    either.faults = [fault]
    assert cli_outcome(either) == (0, ANSWER + "Hi\n")


def test_a_rate_limited_model_is_retried_once(site2):
    site2.faults = [Fault.UPSTREAM_429]
    assert cli_outcome(site2) == (0, ANSWER + "Hi\n")


def test_transient_page_failures_are_retried_too(either):
    either.page_faults = [Fault.HTTP_503]
    assert cli_outcome(either) == (0, ANSWER + "Hi\n")
    assert either.page_gets == 2


@pytest.mark.parametrize("release", ["1.8.85", "1.8.96", "2.3", "2.4.71"])
def test_an_expired_nonce_is_refreshed_once(release):
    with AIPowerSite(release) as site:
        assert cli_outcome(site) == (0, ANSWER + "Hi\n")
        site.rotate_nonce()  # a day later: the cached nonce has expired
        assert cli_outcome(site) == (0, ANSWER + "Hi\n")
        refreshed = site.ajax_requests("aipkit_get_frontend_chat_nonce")
        if release == "2.4.71":  # the refresh endpoint: no page needed
            assert (site.page_gets, len(refreshed)) == (1, 1)
        else:
            assert site.page_gets == 2
            again = [r for r in site.requests if r.method == "GET" and "admin-ajax" not in r.path]
            assert "nocache" in again[-1].query
            assert again[-1].headers.get("cache-control") == "no-cache"


def test_a_stale_cached_page_on_a_site_without_the_refresh_endpoint():
    with AIPowerSite("2.3") as site:
        site.page_nonce_override = "0123456789"
        code, output = cli_outcome(site)
    assert code == 1
    assert_one_sentence(output, r"rejected a fresh nonce too: the site serves a stale cached page")


def test_a_server_slower_than_the_timeout(either):
    either.fault, either.slow_seconds = Fault.SLOW, 3
    code, output = cli_outcome(either, "-o", "timeout", "0.5")
    assert code == 1
    assert_one_sentence(
        output,
        HOST + r"'s admin-ajax did not answer within 0\.5 s\. Try again later, or wait longer "
        r"with -o timeout 300\.$",
    )


def test_a_stream_that_stalls_after_some_text(either):
    either.fault, either.slow_seconds = Fault.STALL, 3
    code, output = cli_outcome(either, "-o", "timeout", "0.5")
    assert code == 1
    assert_one_sentence(output, r"broke off after \d+ characters \(no data for 0\.5 s\)")


def test_a_connect_timeout(transport):
    with unresponsive_port() as url:
        result = run("-m", "chatgptfree", "-o", "site", url, "-o", "timeout", "0.5", "Hi")
    assert result.exit_code == 1
    assert_one_sentence(result.output, r"did not answer within 0\.5 s")


def test_an_unreachable_site(either):
    url = either.chat_url
    either.stop()
    result = run("-m", "chatgptfree", "-o", "site", url, "Hi")
    assert result.exit_code == 1
    assert_one_sentence(result.output, r"^Error: Could not reach http://127\.0\.0\.1:\d+/chat/: .+")


def test_invalid_utf8_keeps_the_answer(either):
    either.fault = Fault.INVALID_UTF8
    code, output = cli_outcome(either)
    assert code == 0 and "\ufffd" in output


def test_a_10_mb_answer(either):
    either.fault, either.big_answer_bytes = Fault.BIG, 10_000_000
    text = llm.get_model("chatgptfree").prompt("Hi", site=either.chat_url).text()
    assert len(text.encode()) >= 9_900_000


def test_1x_json_mode_faults(site):
    site.stream = False
    for fault, pattern in [
        (Fault.TOKEN_LIMIT, r"says: You have reached your token limit\.$"),
        (Fault.UPSTREAM_401, r"says: Incorrect API key provided"),
        (Fault.WORD_BANNED, r"says: Your message contains prohibited words\."),
        (Fault.IP_BANNED, r"says: You are not allowed to access this feature\.$"),
        (Fault.EMPTY, r"sent an empty answer"),
    ]:
        site.faults = [fault]
        code, output = cli_outcome(site)
        assert code == 1
        assert_one_sentence(output, pattern)


def test_a_1x_banned_notice_with_an_answer_is_logged(site):
    site.fault = Fault.IP_BANNED
    assert cli_outcome(site) == (0, ANSWER + "Hi\n")
    [entry] = logs_json("-n", "1")
    assert entry["response_json"]["notice"] == "You are not allowed to access this feature."


def test_a_2x_warning_is_logged(site2):
    site2.fault = Fault.INCOMPLETE
    assert cli_outcome(site2)[0] == 0
    [entry] = logs_json("-n", "1")
    assert entry["response_json"]["warnings"] == ["Incomplete: max_output_tokens"]


def test_timeouts_and_an_unreachable_site_from_the_async_api(either):
    either.fault, either.slow_seconds = Fault.SLOW, 3
    assert_one_sentence(async_outcome(either, timeout=0.5), r"did not answer within 0\.5 s")
    either.fault = Fault.STALL
    assert_one_sentence(async_outcome(either, timeout=0.5), r"\(no data for 0\.5 s\)")
    either.fault = None
    with unresponsive_port() as url:
        assert_one_sentence(async_outcome(either, url=url, timeout=0.5), r"did not answer within")
    url = either.chat_url
    either.stop()
    assert_one_sentence(async_outcome(either, url=url), r"^Error: Could not reach .*127\.0\.0\.1")


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_stream_in_7_byte_pieces_reads_the_same(either, kind):
    either.chunk_size = 7  # frames and UTF-8 characters split across reads, as capture 26/11
    prompt = "Ünïcödé → 日本語, emoji 🙂👍🏽"
    if kind == "sync":
        answer = llm.get_model("chatgptfree").prompt(prompt, site=either.chat_url).text()
    else:

        async def ask() -> str:
            return await async_model().prompt(prompt, site=either.chat_url).text()

        answer = asyncio.run(ask())
    assert answer == ANSWER + prompt
