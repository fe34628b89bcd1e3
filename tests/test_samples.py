"""Every real capture in tests/samples, through the sync and the async model.

The local site answers the plugin's POST with the captured response, byte for byte
(``replay_next``). Each capture must give the right answer or one clear sentence.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import llm
import pytest

from tests.captures import SAMPLES, captures, reference_answer, split_capture
from tests.conftest import async_model, sync_model

# scenario -> the error sentence expected (a regular expression), or None for an answer
EXPECTED_ERRORS = {
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
NONCE_REJECTIONS = {"11-bad-nonce", "12-bad-nonce-no-referer", "13-missing-nonce"}


def prompt_both_ways(site, capture: Path, model_kind: str) -> str:
    site.replay_next(capture)
    if model_kind == "sync":
        return sync_model().prompt("Hello", site=site.chat_url).text()

    async def ask() -> str:
        return await async_model().prompt("Hello", site=site.chat_url).text()

    return asyncio.run(ask())


@pytest.mark.parametrize("model_kind", ["sync", "async"])
@pytest.mark.parametrize(("release", "scenario"), captures())
def test_every_capture_gives_the_answer_or_one_sentence(
    site, release: str, scenario: str, model_kind: str
):
    capture = SAMPLES / release / f"{scenario}.response.http"
    status, body = split_capture(capture)
    host = re.escape(site.base_url.removeprefix("http://"))
    if scenario in EXPECTED_ERRORS:
        with pytest.raises(llm.ModelError) as caught:
            prompt_both_ways(site, capture, model_kind)
        message = str(caught.value)
        assert re.search(EXPECTED_ERRORS[scenario].format(host=host), message), message
        assert "\n" not in message and len(message) < 400
    elif scenario in NONCE_REJECTIONS:
        # a rejected nonce makes the plugin scrape the page again and retry, once
        answer = prompt_both_ways(site, capture, model_kind)
        assert answer == "Hello from the fake upstream. You said: Hello"
        assert site.page_gets == 2 and site.ajax_posts == 2
        assert "wpaicg_nocache" in site.requests[-2].query
    elif status == 200 and '"status":"error"' in body:  # 10-get-query-stream, >= 1.8.91
        with pytest.raises(llm.ModelError, match=r"says: It appears that nothing"):
            prompt_both_ways(site, capture, model_kind)
    else:
        assert prompt_both_ways(site, capture, model_kind) == reference_answer(body)
