"""The pure parts of the core: page scraping, the message, the answer reader."""

from __future__ import annotations

import llm
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_chatgptfree import AnswerReader, NonceRejected, format_prompt, parse_chat_page
from tests.captures import RELEASES, SAMPLES, reference_answer, split_capture

HOST = "example.org"


def read_all(pieces: list[bytes]) -> str:
    reader = AnswerReader(HOST)
    text = [t for piece in pieces for t in reader.feed(piece)]
    return "".join(text + reader.finish())


def answer_captures() -> list:
    """Captures that hold a whole answer (stream or JSON)."""
    found = []
    for release in RELEASES:
        for path in sorted((SAMPLES / release).glob("*.response.http")):
            status, body = split_capture(path)
            whole = "data: [DONE]" in body or '"status":"success"' in body[:30]
            if status == 200 and whole:
                found.append(pytest.param(body, id=f"{release}/{path.name[:2]}"))
    return found


# -- the message -------------------------------------------------------------------------


def test_format_prompt_matches_gpt4free():
    assert format_prompt([("user", "Hi")]) == "Hi"
    assert format_prompt([("system", "Be brief.")]) == "Be brief."
    assert (
        format_prompt([("system", "Be brief."), ("user", "Hi")])
        == "System: Be brief.\nUser: Hi\nAssistant:"
    )
    assert (
        format_prompt([("user", "A"), ("assistant", "B"), ("user", "C")])
        == "User: A\nAssistant: B\nUser: C\nAssistant:"
    )
    assert format_prompt([("SYSTEM", "x"), ("user", "y")]).startswith("System: x")


# -- the page ----------------------------------------------------------------------------


@pytest.mark.parametrize("release", RELEASES)
def test_the_real_pages_parse(release):
    chat = parse_chat_page(
        (SAMPLES / release / "page-chat.html").read_text(), "http://127.0.0.1:8088/chat/"
    )
    assert chat is not None
    assert (chat.nonce, chat.post_id, chat.bot_id) == ("e302406566", "6", "0")
    assert chat.url == "http://127.0.0.1:8088/chat"
    assert chat.ajax_url == "http://127.0.0.1:8088/wp-admin/admin-ajax.php"
    assert (chat.kind, chat.identity, chat.streams) == ("shortcode", "shortcode", True)
    bot = parse_chat_page(
        (SAMPLES / release / "page-bot.html").read_text(), "http://127.0.0.1:8088/bot/"
    )
    assert (bot.post_id, bot.bot_id, bot.identity, bot.streams) == (
        "7",
        "4",
        "custom_bot_4",
        False,
    )


@pytest.mark.parametrize(
    "markup",
    [
        "<div class=wpaicg-chat-shortcode data-nonce=0123456789 data-post-id=6 "
        "data-url=https://x.test/chat data-bot-id=0 data-type=shortcode>",
        "<div data-bot-id = '0' data-url = 'https://x.test/chat' class = 'a "
        "wpaicg-chat-shortcode' data-post-id='6' data-nonce = '0123456789'>",
        '<DIV CLASS="wpaicg-chat-shortcode" DATA-NONCE="0123456789" DATA-POST-ID="6" '
        'data-url="https://x.test/chat" data-bot-id="0">',
    ],
    ids=["unquoted", "single-quotes-spaces-order", "upper-case"],
)
def test_markup_variants_parse(markup):
    box = parse_chat_page(f"<html><body>{markup}</div></body></html>", "https://x.test/c/")
    assert (box.nonce, box.post_id, box.url, box.bot_id) == (
        "0123456789",
        "6",
        "https://x.test/chat",
        "0",
    )
    assert box.ajax_url == "https://x.test/wp-admin/admin-ajax.php"


def test_entities_are_decoded_and_the_nonce_falls_back_to_wpaicg_params():
    page = (
        '<script>var wpaicgParams = {"ajax_url":"https:\\/\\/cdn.x.test\\/wp-admin\\/'
        'admin-ajax.php","search_nonce":"abcdef0123"};</script>'
        '<div class="wpaicg-chatbox wpaicg_chat_widget" data-post-id="9" '
        'data-url="https://x.test/?a=1&amp;b=2" data-bot-id="0" data-type="widget">'
    )
    box = parse_chat_page(page, "https://x.test/")
    assert box.nonce == "abcdef0123"
    assert box.url == "https://x.test/?a=1&b=2"
    assert box.ajax_url == "https://cdn.x.test/wp-admin/admin-ajax.php"
    assert (box.kind, box.action, box.identity) == (
        "widget",
        "wpaicg_chatbox_message",
        "widget",
    )


def test_the_first_box_wins_unless_a_bot_is_asked_for():
    page = (
        '<div class="wpaicg-chat-shortcode" data-nonce="1111111111" data-post-id="5" '
        'data-bot-id="4" data-url="u">'
        '<div class="wpaicg-chat-shortcode" data-nonce="1111111111" data-post-id="5" '
        'data-bot-id="0" data-url="u">'
    )
    assert parse_chat_page(page, "https://x.test/").bot_id == "4"
    assert parse_chat_page(page, "https://x.test/", bot_id="0").bot_id == "0"


def test_pages_without_a_chat_box():
    css_only = "<style>.wpaicg-chat-shortcode{color:red}</style><p>data-nonce</p>"
    assert parse_chat_page(css_only, "https://x.test/") is None
    assert parse_chat_page("", "https://x.test/") is None
    content_div = '<div class="wpaicg-chat-shortcode-content">'
    assert parse_chat_page(content_div, "https://x.test/") is None


# -- the answer --------------------------------------------------------------------------


@pytest.mark.parametrize("body", answer_captures())
def test_captured_answers_read_the_same_in_any_pieces(body):
    data = body.encode()
    expected = reference_answer(body)
    assert read_all([data]) == expected
    assert read_all([data[i : i + 1] for i in range(len(data))]) == expected
    assert read_all([data[i : i + 7] for i in range(0, len(data), 7)]) == expected


SSE_OK = (SAMPLES / "1.8.96" / "02-sse-unicode.response.http").read_bytes()
SSE_OK = SSE_OK.partition(b"\r\n\r\n")[2] or SSE_OK.partition(b"\n\n")[2]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(SSE_OK)), max_size=60))
def test_any_split_into_network_reads_yields_the_same_text(cuts):
    points = sorted(set(cuts))
    pieces = [SSE_OK[a:b] for a, b in zip([0, *points], [*points, len(SSE_OK)], strict=True)]
    assert read_all(pieces) == reference_answer(SSE_OK.decode())


@settings(max_examples=300, deadline=None)
@given(
    head=st.sampled_from([b"data: ", b"event: message\ndata: ", b"{", b"", b"data: {"]),
    junk=st.binary(max_size=300),
    cut=st.integers(min_value=1, max_value=50),
)
def test_arbitrary_bytes_raise_nothing_but_model_error(head, junk, cut):
    data = head + junk
    try:
        read_all([data[i : i + cut] for i in range(0, len(data), cut)])
    except llm.ModelError as error:
        message = str(error)
        assert message and "\n" not in message


def test_role_only_and_finish_chunks_give_no_text():
    body = (
        b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
        b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n'
        b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n'
    )
    reader = AnswerReader(HOST)
    assert reader.feed(body) == ["Hi"]
    assert reader.finish() == []  # a finish reason without [DONE] is a whole answer
    assert reader.finish_reason == "stop"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "example.org sent an empty answer. Try again."),
        (b"data: [DONE]\n\n", "example.org sent an empty answer. Try again."),
        (b"0", "example.org has no AI Power chat handler"),
        (
            b'data: {"msg":"You have reached your token limit.","tokenLimitReached":true}\n\n',
            "example.org says: You have reached your token limit.",
        ),
        (
            b'{"msg":"You have reached your token limit.","tokenLimitReached":true}',
            "example.org says: You have reached your token limit.",
        ),
        (
            b'event: message\ndata: {"choices":[{"delta":{"content":"Oops"}}]}\n\n'
            b"data: [LIMITED]\n\n",
            "No answer from example.org: the site stopped the answer: Oops.",
        ),
        (b"<html><title>Oh no</title></html>", "example.org sent a web page instead"),
        (
            b"data: {broken\n\n",
            "No answer from example.org: the stream held a broken frame",
        ),
    ],
)
def test_failures_are_one_sentence(body, message):
    with pytest.raises(llm.ModelError) as caught:
        read_all([body])
    assert str(caught.value).startswith(message)


def test_a_banned_notice_without_an_answer_is_an_error_and_with_one_is_kept():
    notice = b'data: {"msg":"You are not allowed to access this feature.","ipBanned":true}\n\n'
    with pytest.raises(llm.ModelError, match="says: You are not allowed"):
        read_all([notice])
    reader = AnswerReader(HOST)
    answer = b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\ndata: [DONE]\n\n'
    assert reader.feed(notice + answer) == ["Hi"]
    assert reader.notice == "You are not allowed to access this feature."


def test_openrouter_comments_are_ignored():
    body = (
        b": OPENROUTER PROCESSING\n\n"
        b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n'
        b": OPENROUTER PROCESSING\n\ndata: [DONE]\n\n"
    )
    assert read_all([body]) == "Hi"


@pytest.mark.parametrize(
    "body",
    [
        b'{"status":"error","msg":"Nonce verification failed"}',
        b'{"status":"error","msg":"Invalid nonce. This means we are unable to verify the '
        b'validity of the nonce. There are couple of possible reasons for this."}',
        b'{"status":"error","msg":"Security check"}',
        b"-1",
    ],
    ids=["1.7.86-1.8.90", "1.7.14-1.7.74", "pre-1.7", "check_ajax_referer"],
)
def test_every_generation_of_nonce_rejection_is_recognised(body):
    with pytest.raises(NonceRejected):
        read_all([body])
