"""The pure parts of the core, fed canned bytes: pages, messages, answers of both
generations, and what a failure says. No sockets, no files beyond tests/samples."""

from __future__ import annotations

import json
import re

import llm
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import llm_chatgptfree as plugin
from tests.canned import read_capture
from tests.captures import RELEASES, SAMPLES, reference_answer, split_capture

HOST = "example.org"
BOX_2X = plugin.ChatBox("2.x", "https://x.test/", "https://x.test/a", "0123456789", "6", "4",
                        "Helper")  # fmt: skip


def read_1x(pieces: list[bytes]) -> str:
    return read(plugin.AnswerReader1(HOST), pieces)


def read_2x(pieces: list[bytes]) -> str:
    return read(plugin.AnswerReader2(HOST, BOX_2X), pieces)


def read(reader: plugin.AnswerReader, pieces: list[bytes]) -> str:
    """Feed ``pieces`` as the drivers do; the text, or the failure the answer ended with."""
    text = []
    for piece in pieces:
        if reader.ended:
            break
        text.append(reader.feed(piece))
    text.append(reader.finish())
    if reader.failure is not None:
        raise reader.failure
    return "".join(text)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted(set(cuts))
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def answer_captures() -> list:
    """1.x captures that hold a whole answer (stream or JSON)."""
    found = []
    for release in RELEASES:
        for path in sorted((SAMPLES / release).glob("*.response.http")):
            status, body = split_capture(path)
            whole = "data: [DONE]" in body or '"status":"success"' in body[:30]
            if status == 200 and whole:
                found.append(pytest.param(body, id=f"{release}/{path.name[:2]}"))
    return found


def stream_captures_2x() -> list:
    found = []
    for release in ("2.3", "2.4.71"):
        for path in sorted((SAMPLES / release).glob("*.response.http")):
            canned = read_capture(path)
            if b"event: done" in canned.body and b"message_start" in canned.body:
                found.append(pytest.param(canned.body, id=f"{release}/{path.name[:2]}"))
    return found


def deltas(body: bytes) -> str:
    import json

    lines = body.decode().splitlines()
    return "".join(json.loads(x[6:])["delta"] for x in lines if x.startswith('data: {"delta"'))


# -- the message -------------------------------------------------------------------------


def test_transcript_matches_gpt4free():
    assert plugin.transcript([("user", "Hi")]) == "Hi"
    assert plugin.transcript([("system", "Be brief.")]) == "Be brief."
    assert (
        plugin.transcript([("system", "Be brief."), ("user", "Hi")])
        == "System: Be brief.\nUser: Hi\nAssistant:"
    )
    assert (
        plugin.transcript([("user", "A"), ("assistant", "B"), ("user", "C")])
        == "User: A\nAssistant: B\nUser: C\nAssistant:"
    )


def test_a_message_of_just_0_still_reaches_the_model():
    """PHP's empty() takes "0" for nothing; a newline (trimmed by the site) avoids that."""
    assert plugin.cache_form(BOX_2X, "0")["message"] == "0\n"
    assert plugin.cache_form(BOX_2X, "10")["message"] == "10"


# -- the page: 1.x -------------------------------------------------------------------------


@pytest.mark.parametrize("release", RELEASES)
def test_the_real_1x_pages_parse(release):
    (chat,) = plugin.read_chat_boxes(
        (SAMPLES / release / "page-chat.html").read_text(), "http://127.0.0.1:8088/chat/"
    )
    assert (chat.generation, chat.nonce, chat.post_id, chat.bot_id) == (
        "1.x", "e302406566", "6", "0",
    )  # fmt: skip
    assert chat.url == "http://127.0.0.1:8088/chat"
    assert chat.ajax_url == "http://127.0.0.1:8088/wp-admin/admin-ajax.php"
    assert (chat.kind, chat.release) == ("shortcode", release)
    (bot,) = plugin.read_chat_boxes(
        (SAMPLES / release / "page-bot.html").read_text(), "http://127.0.0.1:8088/bot/"
    )
    assert (bot.post_id, bot.bot_id) == ("7", "4")
    assert plugin.form_1x(bot, "hi", "c")["chatbot_identity"] == "custom_bot_4"


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
def test_1x_markup_variants_parse(markup):
    (box,) = plugin.read_chat_boxes(
        f"<html><body>{markup}</div></body></html>", "https://x.test/c/"
    )
    assert (box.nonce, box.post_id, box.url, box.bot_id) == (
        "0123456789", "6", "https://x.test/chat", "0",
    )  # fmt: skip
    assert box.ajax_url == "https://x.test/wp-admin/admin-ajax.php"


def test_entities_are_decoded_and_the_nonce_falls_back_to_wpaicg_params():
    page = (
        '<script>var wpaicgParams = {"ajax_url":"https:\\/\\/x.test\\/wp\\/'
        'admin-ajax.php","search_nonce":"abcdef0123"};</script>'
        '<div class="wpaicg-chatbox wpaicg_chat_widget" data-post-id="9" '
        'data-url="https://x.test/?a=1&amp;b=2" data-bot-id="0" data-type="widget">'
    )
    (box,) = plugin.read_chat_boxes(page, "https://x.test/")
    assert box.nonce == "abcdef0123"
    assert box.url == "https://x.test/?a=1&b=2"
    assert box.ajax_url == "https://x.test/wp/admin-ajax.php"
    assert plugin.form_1x(box, "hi", "c")["action"] == "wpaicg_chatbox_message"


def test_another_plugins_ajax_url_never_chooses_the_endpoint():
    """Issue: the first "ajax_url" anywhere on the page used to be taken."""
    page = (
        '<script>var trackerParams = {"ajax_url":"https:\\/\\/collector.example.net\\/c"};'
        'var wpaicgParams = {"ajax_url":"https:\\/\\/elsewhere.example\\/admin-ajax.php",'
        '"search_nonce":"abcdef0123"};</script>'
        '<div class="wpaicg-chat-shortcode" data-post-id="9" data-bot-id="0">'
    )
    (box,) = plugin.read_chat_boxes(page, "https://x.test/chat/")
    assert box.ajax_url == "https://x.test/wp-admin/admin-ajax.php"


def test_the_first_box_wins_unless_a_bot_is_asked_for():
    page = (
        '<div class="wpaicg-chat-shortcode" data-nonce="1111111111" data-post-id="5" '
        'data-bot-id="4" data-url="u">'
        '<div class="wpaicg-chat-shortcode" data-nonce="1111111111" data-post-id="5" '
        'data-bot-id="0" data-url="u">'
    )
    boxes = plugin.read_chat_boxes(page, "https://x.test/")
    assert plugin.choose_box(boxes, None, False).bot_id == "4"
    assert plugin.choose_box(boxes, "0", False).bot_id == "0"
    assert plugin.choose_box(boxes, "9", False) is None


def test_with_no_bot_asked_for_the_first_box_wins():
    """Issue: with no bot asked for, the first box *without* data-bot-id was picked, so a
    page whose later widget has no nonce gave "No AI Power chat box"."""
    page = (
        '<div class="wpaicg-chat-shortcode" data-nonce="1111111111" data-bot-id="7">'
        '<div class="wpaicg-chatbox" data-post-id="5">'
    )
    boxes = plugin.read_chat_boxes(page, "https://x.test/")
    assert plugin.choose_box(boxes, None, False).bot_id == "7"


def test_pages_without_a_chat_box():
    css_only = "<style>.wpaicg-chat-shortcode{color:red}</style><p>data-nonce</p>"
    assert plugin.read_chat_boxes(css_only, "https://x.test/") == []
    assert plugin.read_chat_boxes("", "https://x.test/") == []
    content_div = '<div class="wpaicg-chat-shortcode-content">'
    assert plugin.read_chat_boxes(content_div, "https://x.test/") == []
    script = '<script>x = \'<div class="wpaicg-chat-shortcode" data-nonce="1234567890">\'</script>'
    assert plugin.read_chat_boxes(script, "https://x.test/") == []


# -- the page: 2.x -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("release", "shown", "refreshable"), [("2.3", "", False), ("2.4.71", "2.4.71", True)]
)
def test_the_real_2x_pages_parse(release, shown, refreshable):
    page = (SAMPLES / release / "page-chat.html").read_text()
    first, second = plugin.read_chat_boxes(page, "http://127.0.0.1:8088/chat/")
    assert first.generation == second.generation == "2.x"
    assert first.nonce == second.nonce == "e492389ffd"
    assert first.ajax_url == "http://127.0.0.1:8088/wp-admin/admin-ajax.php"
    assert (first.bot_id, first.provider, first.kind) == ("4", "OpenAI", "inline")
    assert first.label in ("Default", "Customer Support")
    assert second.label == "Second Bot"
    assert first.release == shown  # the 2.3 page names no plugin asset version
    assert first.can_refresh_nonce is refreshable


def config(bot: int, label: str, **extra) -> str:
    import html
    import json

    value = {"botId": bot, "ajaxUrl": "https://x.test/wp-admin/admin-ajax.php",
             "nonce": "0123456789", "postId": 6, "headerName": label, "provider": "OpenAI",
             **extra}  # fmt: skip
    return html.escape(json.dumps(value).replace("/", "\\/"), quote=True)


def test_popup_double_quoted_and_duplicate_boxes():
    page = (
        f"<div class=\"aipkit_popup_wrapper\" data-config='{config(8, 'GPT-5 Nano')}' "
        'data-bot-id="8"><div class="aipkit_chat_container aipkit_popup_content"></div></div>'
        f'<div class="aipkit_chat_container" data-bot-id="9" data-config="{config(9, "Claude")}">'
        f'<div class="aipkit_chat_container" data-bot-id="9" data-config="{config(9, "Claude")}">'
    )
    boxes = plugin.read_chat_boxes(page, "https://x.test/")
    assert [(b.bot_id, b.label, b.kind) for b in boxes] == [
        ("8", "GPT-5 Nano", "popup"), ("9", "Claude", "inline"),
    ]  # fmt: skip


def test_the_built_in_model_prefers_the_gpt_4o_mini_bot():
    page = "".join(
        f'<div class="aipkit_chat_container" data-bot-id="{n}" data-config=\'{config(n, label)}\'>'
        for n, label in [(25871, "GPT-5 Nano"), (25865, "GPT-4o Mini"), (25875, "Claude")]
    )
    boxes = plugin.read_chat_boxes(page, "https://x.test/")
    assert plugin.choose_box(boxes, None, True).bot_id == "25865"
    assert plugin.choose_box(boxes, None, False).bot_id == "25871"


def test_a_2x_config_without_what_a_prompt_needs_is_no_chat_box():
    page = (
        f"<div class=\"aipkit_chat_container\" data-config='{config(4, 'A', nonce='')}'>"
        '<div class="aipkit_chat_container" data-config=\'{"botId":5}\'>'
        "<div class=\"aipkit_chat_container\" data-config='[[[['>"
    )
    assert plugin.read_chat_boxes(page, "https://x.test/") == []


# -- answers: 1.x ----------------------------------------------------------------------------


@pytest.mark.parametrize("body", answer_captures())
def test_captured_1x_answers_read_the_same_in_any_pieces(body):
    data = body.encode()
    expected = reference_answer(body)
    assert read_1x([data]) == expected
    assert read_1x([data[i : i + 1] for i in range(len(data))]) == expected
    assert read_1x([data[i : i + 7] for i in range(0, len(data), 7)]) == expected


SSE_1X = read_capture(SAMPLES / "1.8.96" / "02-sse-unicode.response.http").body
SSE_2X = read_capture(SAMPLES / "2.4.71" / "04-stream-unicode.response.http").body


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(SSE_1X)), max_size=60))
def test_any_split_of_a_1x_answer_yields_the_same_text(cuts):
    assert read_1x(split(SSE_1X, cuts)) == reference_answer(SSE_1X.decode())


def test_role_only_and_finish_chunks_give_no_text():
    body = (
        b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
        b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n'
        b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n'
    )
    reader = plugin.AnswerReader1(HOST)
    assert reader.feed(body) == "Hi"
    assert reader.finish() == ""  # a finish reason without [DONE] is a whole answer
    assert (reader.finish_reason, reader.failure) == ("stop", None)


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
        (b"data: {broken\n\n", "No answer from example.org: the stream held a broken frame"),
    ],
)
def test_1x_failures_are_one_sentence(body, message):
    with pytest.raises(llm.ModelError) as caught:
        read_1x([body])
    assert str(caught.value).startswith(message)


def test_a_banned_notice_without_an_answer_is_an_error_and_with_one_is_kept():
    notice = b'data: {"msg":"You are not allowed to access this feature.","ipBanned":true}\n\n'
    with pytest.raises(llm.ModelError, match="says: You are not allowed"):
        read_1x([notice])
    reader = plugin.AnswerReader1(HOST)
    answer = b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\ndata: [DONE]\n\n'
    assert reader.feed(notice + answer) == "Hi"
    assert reader.notice == "You are not allowed to access this feature."


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
def test_every_generation_of_1x_nonce_rejection_is_recognised(body):
    with pytest.raises(plugin.NonceRejected):
        read_1x([body])


# -- answers: 2.x ----------------------------------------------------------------------------


@pytest.mark.parametrize("body", stream_captures_2x())
def test_captured_2x_answers_read_the_same_in_any_pieces(body):
    expected = deltas(body)
    assert read_2x([body]) == expected
    assert read_2x([body[i : i + 1] for i in range(len(body))]) == expected
    assert read_2x([body[i : i + 7] for i in range(0, len(body), 7)]) == expected


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(SSE_2X)), max_size=60))
def test_any_split_of_a_2x_answer_yields_the_same_text(cuts):
    assert read_2x(split(SSE_2X, cuts)) == deltas(SSE_2X)


# Streams made up event by event, each line ended its own way (LF, CRLF or a lone CR, as
# the SSE format allows), then split anywhere: the reader must give the text of the answer
# events and nothing else, whatever the split. (Fixed captures never mix line endings or
# name an event the reader skips, so they could not have found a reader that ignored a
# pending ``event:`` when a read began with a delta, or swallowed a blank line after a CR.)
ENDINGS = st.sampled_from(["\n", "\r\n", "\r"])
WORDS = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=6)


SPLITS = st.one_of(  # where the network splits: anywhere, by bytes, frames or lines
    st.lists(st.integers(min_value=0, max_value=600), max_size=40),
    st.just("bytes"),
    st.just("frames"),
    st.just("lines"),
)


def split_as(body: bytes, how: list[int] | str) -> list[bytes]:
    if how == "bytes":
        return [body[i : i + 1] for i in range(len(body))]
    if how == "frames":
        return re.findall(rb".*?\n\n|.+$", body, re.S)
    if how == "lines":  # each line a read, an event's blank line with the line before it
        return re.findall(rb"[^\r\n]*(?:\r\n|\r|\n)(?:\r\n|\r|\n)?|.+$", body)
    return split(body, how)


def compact(value: object) -> str:
    """JSON as PHP's ``json_encode`` writes it (no spaces)."""
    return json.dumps(value, separators=(",", ":"))


def sse_body(events: list[tuple[str, str]], endings: list[str]) -> bytes:
    """``events`` as SSE lines, the n-th line ended by ``endings[n % len]``; a CR before an
    empty line's LF would make one CRLF of the two, so that LF becomes a CR."""
    lines: list[str] = []
    for name, data in events:
        lines += ([f"event: {name}"] if name else []) + [f"data: {data}", ""]
    body, previous = [], ""
    for n, line in enumerate(lines):
        ending = endings[n % len(endings)]
        if previous == "\r" and not line and ending.startswith("\n"):
            ending = "\r"
        body.append(line + ending)
        previous = ending
    return "".join(body).encode()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    answer=st.lists(st.tuples(st.sampled_from(["", "message", "reasoning", "status"]), WORDS),
                    max_size=8),
    endings=st.lists(ENDINGS, min_size=1, max_size=4),
    cuts=SPLITS,
)  # fmt: skip
@example(answer=[("reasoning", "x"), ("", "y")], endings=["\n"], cuts="lines")  # event pending
@example(answer=[("", "y")], endings=["\n", "\r\n"], cuts="bytes")  # an LF alone after a CR
def test_a_2x_stream_of_any_events_and_line_endings_reads_the_same_in_any_split(
    answer, endings, cuts
):
    events = [("message_start", '{"message_id":"m"}')]
    events += [(name, compact({"delta": text})) for name, text in answer]
    body = sse_body([*events, ("done", '{"finished":true}')], endings)
    expected = "".join(text for name, text in answer if name in ("", "message"))
    if not expected:
        return  # an empty answer is an error, read the same way: tested elsewhere
    assert read_2x(split_as(body, cuts)) == expected


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    answer=st.lists(WORDS, min_size=1, max_size=8),
    endings=st.lists(ENDINGS, min_size=1, max_size=4),
    cuts=SPLITS,
)
@example(
    answer=["a", "b", "c"], endings=["\n", "\n", "\r", "\r", "\n", "\n"], cuts="frames"
)  # CRs in a frame
def test_a_1x_stream_of_any_line_endings_reads_the_same_in_any_split(answer, endings, cuts):
    chunks = [compact({"choices": [{"delta": {"content": text}}]}) for text in answer]
    body = sse_body([("", c) for c in chunks] + [("", "[DONE]")], endings)
    if not "".join(answer):
        return
    assert read_1x(split_as(body, cuts)) == "".join(answer)


def test_the_2x_reader_records_what_llm_logs():
    body = read_capture(SAMPLES / "2.4.71" / "05-stream-long-incomplete.response.http").body
    reader = plugin.AnswerReader2(HOST, BOX_2X)
    read(reader, [body])
    details = reader.details()
    assert details["ended"] == "done" and details["mode"] == "stream"
    assert details["warnings"] == ["Incomplete: max_output_tokens"]
    assert details["message_id"].startswith("aipkit-msg-")
    assert details["response_id"].startswith("resp_fake")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"event: done\ndata: {\"finished\":true}\n\n", "example.org's bot 4 (Helper) sent an "
         "empty answer. Try again."),
        (b'event: message_start\ndata: {"message_id":"m"}\n\ndata: {"delta":"Hi"}\n\n',
         "The answer from example.org broke off after 2 characters (the stream ended without "
         "its done event); the text above is incomplete."),
        (b"", "example.org closed the answer stream before it began."),
        (b'event: error\ndata: {"error":"You have reached your quota for this period.",'
         b'"quota_notice":{"type":"quota_notice"}}\n\nevent: done\ndata: {}\n\n',
         "example.org says: You have reached your quota for this period. That is the site's "
         "limit for bot 4 (Helper): try another bot, or try again later."),
        (b'event: error\ndata: {"error":"Access from your IP address has been blocked."}\n\n',
         "example.org says: Access from your IP address has been blocked. Try from another "
         "network, or through a proxy (-o proxy)."),
        (b'event: error\ndata: {"error":"Sorry, your message could not be sent as it contains '
         b'prohibited words."}\n\n', "example.org says: Sorry, your message could not be sent "
         "as it contains prohibited words. Rephrase the prompt."),
        (b'event: error\ndata: {"error":"API key missing for Claude."}\n\n',
         "example.org's bot 4 (Helper) is not set up (API key missing for Claude.): try "
         "another bot."),
        (b'event: error\ndata: {"error":"Access disabled for guests."}\n\n',
         "example.org says: Access disabled for guests. That is the site's limit"),
    ],
)  # fmt: skip
def test_2x_failures_are_one_sentence(body, message):
    with pytest.raises(llm.ModelError) as caught:
        read_2x([body])
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Security check failed (nonce).", plugin.NonceRejected),
        ("Security check failed. Please refresh the page and try again.", plugin.NonceRejected),
        ("Message not found in cache.", plugin.KeyLost),
        ("Cached message has expired.", plugin.KeyLost),
        ("Message cache key is missing.", plugin.KeyLost),
        ("Invalid chatbot specified.", plugin.BotGone),
    ],
)
def test_2x_refusals_that_a_prompt_recovers_from(text, kind):
    body = f'event: error\ndata: {{"error":"{text}"}}\n\nevent: done\ndata: {{}}\n\n'.encode()
    with pytest.raises(kind):
        read_2x([body])


def test_unknown_events_comments_and_padding_are_ignored():
    body = (
        b":" + b" " * 4096 + b"\n\n"
        b"event: message_start\ndata: {}\n\n"
        b'event: display_form_event\ndata: {"x":1}\n\n'
        b": keep-alive\n\n"
        b'event: citations\ndata: [{"url":"https://a.test/"}]\n\n'
        b'data: {"delta":""}\n\ndata: {"delta":"Hi"}\n\n'
        b'event: done\ndata: {"finished":true}\n\n'
    )
    reader = plugin.AnswerReader2(HOST, BOX_2X)
    assert read(reader, [body]) == "Hi"
    assert reader.citations == ["https://a.test/"]


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(st.text(max_size=20), min_size=1, max_size=8), ascii_only=st.booleans())
def test_the_short_way_for_delta_frames_reads_as_the_full_parser(texts, ascii_only):
    """One frame per network read takes a short way; it must read exactly as json.loads."""
    import json

    frames = [
        b"data: " + json.dumps({"delta": t}, ensure_ascii=ascii_only).replace("/", "\\/").encode()
        + b"\n\n"
        for t in texts
    ]  # fmt: skip
    reader = plugin.AnswerReader2(HOST, BOX_2X)
    shown = [reader.feed(b"event: message_start\ndata: {}\n\n")]
    shown += [reader.feed(frame) for frame in frames]
    assert "".join(shown) == "".join(texts)
    assert reader.chars == len("".join(texts))


@pytest.mark.parametrize(
    "frame",
    [
        b'data: {"delta":"a"}\n\ndata: {"delta":"b"}\n\n',
        b'data: {"delta":"a","x":1}\n\n',
        b'data: {"delta":"\xff"}\n\n',
        b'data: {"delta":"a\nb"}\n\n',
        b'data: {"delta":"a\\"}\n\n',
    ],
    ids=["two-frames", "extra-key", "bad-utf8", "raw-newline", "escaped-quote-at-end"],
)
def test_frames_off_the_short_way_go_the_full_way(frame):
    short = plugin.delta_of_frame(frame)
    assert short is None or frame == b'data: {"delta":"a"}\n\n'
    reader = plugin.AnswerReader2(HOST, BOX_2X)
    reader.feed(b": padding\n\n")
    full = plugin.AnswerReader2(HOST, BOX_2X)
    full._started = True
    assert reader.feed(frame) == full.take(full._decoder.decode(frame))


@pytest.mark.parametrize("body", answer_captures())
def test_captured_1x_answers_read_the_same_frame_by_frame(body):
    """One frame per network read, as the plugin's curl callback flushes them: the short
    way for whole frames reads as the full one."""
    data = body.encode()
    frames = [frame + b"\n\n" for frame in data.split(b"\n\n") if frame]
    assert read_1x(frames) == reference_answer(body)
