"""End to end through llm's own command line and Python API, against the local AI Power
site of each generation: what a user types, what reaches the site, what is logged."""

from __future__ import annotations

import asyncio
import re

import llm

import llm_chatgptfree
from tests.aipower_site import AIPowerSite, PageVariant
from tests.conftest import logged_responses, logs_json, run

ANSWER = "Hello from the fake upstream. You said: "


def test_models_lists_readable_lines_without_the_network():
    result = run("models")
    assert result.exit_code == 0
    lines = [line for line in result.output.splitlines() if line.startswith("ChatgptFree")]
    assert lines[0] == (
        "ChatgptFree: gpt-4o-mini-2024-07-18 (free chat of chatgptfree.ai, its GPT-4o Mini "
        "bot) (aliases: chatgptfree)"
    )
    assert "ChatgptFree: chatgptfree/gpt-5-nano (GPT-5 Nano, bot 25871 of chatgptfree.ai)" in lines
    assert "ChatgptFree: chatgptfree/claude (Claude, bot 25875 of chatgptfree.ai)" in lines
    assert len(lines) == 10  # the built-in model and the nine bots of a fresh install


def test_gpt_4o_mini_stays_openai():
    assert type(llm.get_model("gpt-4o-mini")).__name__ == "Chat"
    assert llm.get_model("gpt-4o-mini").model_id == "gpt-4o-mini"
    assert type(llm.get_model("gpt-4o-mini-2024-07-18")).__name__ == "ChatgptFree"
    assert type(llm.get_model("chatgptfree")).__name__ == "ChatgptFree"
    assert type(llm.get_async_model("chatgptfree")).__name__ == "AsyncChatgptFree"
    assert type(llm.get_model("chatgptfree/gpt-4o-mini")).__name__ == "ChatgptFree"


def test_users_can_opt_in_to_the_gpt_4o_mini_alias():
    result = run("aliases", "set", "gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    assert result.exit_code == 0, result.output
    assert type(llm.get_model("gpt-4o-mini")).__name__ == "ChatgptFree"


# -- a prompt, generation 1.x ----------------------------------------------------------------


def test_a_1x_prompt_sends_the_plugin_form(site):
    result = run("-m", "gpt-4o-mini-2024-07-18", "-o", "site", site.chat_url, "Hi there")
    assert result.exit_code == 0, result.output
    assert result.output == ANSWER + "Hi there\n"
    assert site.page_gets == 1 and site.ajax_posts == 1
    post = site.requests[-1]
    assert post.method == "POST" and post.path == "/wp-admin/admin-ajax.php"
    assert post.headers["content-type"] == "application/x-www-form-urlencoded"
    assert post.headers["origin"] == site.base_url
    assert post.headers["referer"] == site.chat_url
    form = post.form
    assert form["action"] == "wpaicg_chat_shortcode_message"
    assert form["_wpnonce"] == site.nonce
    assert (form["post_id"], form["url"], form["bot_id"]) == ("6", site.base_url + "/chat", "0")
    assert form["chatbot_identity"] == "shortcode"
    assert re.fullmatch(r"[A-Za-z0-9]{10}", form["wpaicg_chat_client_id"])
    assert form["wpaicg_chat_history"] == "[]"
    assert 1 <= int(form["chat_id"]) <= 100_000
    assert form["message"] == "Hi there"
    assert site.upstream[-1][-1] == {"role": "user", "content": "Hi there"}


def test_a_custom_1x_bot_answering_json(site, monkeypatch):
    monkeypatch.setenv("CHATGPTFREE_SITE", site.bot_url)
    result = run("-m", "chatgptfree", "Hi bot")
    assert result.output == ANSWER + "Hi bot\n"
    form = site.requests[-1].form
    assert (form["post_id"], form["bot_id"], form["chatbot_identity"]) == ("7", "4", "custom_bot_4")
    [entry] = logs_json("-n", "1")
    assert entry["response_json"]["mode"] == "json"


def test_1x_logs_record_the_turn_without_inventing_usage(site):
    run("-m", "chatgptfree", "-o", "site", site.chat_url, "Log me")
    [row] = logged_responses()
    assert row["model"] == "gpt-4o-mini-2024-07-18"
    assert row["response"] == ANSWER + "Log me"
    assert row["input_tokens"] is None and row["output_tokens"] is None
    details = row["response_json"]
    assert details == {
        "site": site.chat_url,
        "generation": "1.x",
        "release": "1.8.96",
        "bot_id": "0",
        "post_id": "6",
        "mode": "sse",
        "finish_reason": "stop",
        "id": details["id"],
        "model": "gpt-4o-mini-2024-07-18",
    }
    assert details["id"].startswith("chatcmpl-")
    assert row["options_json"] == {"site": site.chat_url}
    host = site.base_url.removeprefix("http://")
    assert row["resolved_model"] == f"gpt-4o-mini-2024-07-18 via {host} chat box"


def test_1x_page_markup_variants_answer(site):
    for variant in ["minified", "entities", "several", "widget_only", "params_only"]:
        site.page_variant = variant
        llm_chatgptfree.PAGE_CACHE.forget()
        result = run("-m", "chatgptfree", "-o", "site", site.chat_url, "Hi")
        assert result.output == ANSWER + "Hi\n", variant
        form = site.requests[-1].form
        if variant == "widget_only":
            assert (form["action"], form["chatbot_identity"]) == (
                "wpaicg_chatbox_message",
                "widget",
            )
        if variant == "several":
            assert form["bot_id"] == "4" and form["chatbot_identity"] == "custom_bot_4"


def test_every_release_answers(any_site):
    result = run("-m", "chatgptfree", "-o", "site", any_site.chat_url, "Hi")
    assert (result.exit_code, result.output) == (0, ANSWER + "Hi\n")
    [row] = logged_responses()
    assert row["response_json"]["generation"] == any_site.generation


# -- a prompt, generation 2.x ----------------------------------------------------------------


def test_a_2x_prompt_caches_the_message_then_streams_it(site2):
    result = run("-m", "gpt-4o-mini-2024-07-18", "-o", "site", site2.chat_url, "Hi there")
    assert (result.exit_code, result.output) == (0, ANSWER + "Hi there\n")
    page, cache, stream = site2.requests
    assert (page.method, page.path) == ("GET", "/chat/")
    assert cache.method == "POST" and cache.form["action"] == "aipkit_cache_sse_message"
    assert cache.form["message"] == "Hi there"
    assert (cache.form["_ajax_nonce"], cache.form["bot_id"]) == (site2.nonce, "4")
    assert cache.headers["origin"] == site2.base_url
    assert cache.headers["referer"] == site2.chat_url
    query = stream.query
    assert stream.method == "GET" and query["action"] == "aipkit_frontend_chat_stream"
    assert query["cache_key"].startswith("aipkit_sse_")
    assert (query["bot_id"], query["post_id"], query["_ajax_nonce"]) == ("4", "7", site2.nonce)
    assert re.fullmatch(r"[0-9a-f-]{36}", query["session_id"])
    assert re.fullmatch(r"[0-9a-f-]{36}", query["conversation_uuid"])
    assert stream.headers["accept"] == "text/event-stream"
    assert "origin" not in stream.headers  # as a browser's EventSource
    assert site2.upstream[-1][-1] == {"role": "user", "content": "Hi there"}


def test_2x_logs_say_which_site_and_bot_answered(site2):
    run("-m", "chatgptfree", "-o", "site", site2.chat_url, "Log me")
    [row] = logged_responses()
    details = row["response_json"]
    assert details == {
        "site": site2.chat_url,
        "generation": "2.x",
        "release": "2.4.71",
        "bot_id": "4",
        "bot": "Customer Support",
        "provider": "OpenAI",
        "post_id": "7",
        "mode": "stream",
        "ended": "done",
        "message_id": details["message_id"],
        "response_id": details["response_id"],
    }
    assert details["message_id"].startswith("aipkit-msg-")
    assert row["input_tokens"] is None and row["output_tokens"] is None
    host = site2.base_url.removeprefix("http://")
    assert row["resolved_model"] == f"{host} bot 4 (Customer Support)"
    plain = run("logs", "-n", "1").output
    assert f"(resolved: **{host} bot 4 (Customer Support)**)" in plain


def test_2x_usage_is_asked_for_only_when_wanted(site2):
    run("-m", "chatgptfree", "-o", "site", site2.chat_url, "No usage")
    assert site2.ajax_requests("aipkit_get_conversation_history") == []
    result = run("-m", "chatgptfree", "-o", "site", site2.chat_url, "-o", "usage", "1", "Usage")
    assert result.exit_code == 0, result.output
    [ask] = site2.ajax_requests("aipkit_get_conversation_history")
    stream = site2.ajax_requests("aipkit_frontend_chat_stream")[-1]
    assert ask.form["conversation_uuid"] == stream.query["conversation_uuid"]
    row = logged_responses()[-1]
    assert row["input_tokens"] > 0 and row["output_tokens"] > 0
    assert row["response_json"]["upstream_model"] == "gpt-4o-mini"
    assert row["resolved_model"].startswith("gpt-4o-mini via ")


def test_every_bot_of_the_page_is_a_model_after_refresh(site2, monkeypatch):
    site2.page_variant = PageVariant.CHATGPTFREE
    monkeypatch.setenv("CHATGPTFREE_SITE", site2.home_url)
    result = run("chatgptfree", "refresh")
    assert result.exit_code == 0, result.output
    assert "AI Power 2.4.71, 9 bots" in result.output
    assert "  chatgptfree/gpt-5-nano: GPT-5 Nano" in result.output
    models = run("models").output
    assert "ChatgptFree: chatgptfree/claude (Claude" in models
    answer = run("-m", "chatgptfree/gpt-5-nano", "Hi nano")
    assert answer.output == ANSWER + "Hi nano\n"
    assert site2.ajax_requests("aipkit_cache_sse_message")[-1].form["bot_id"] == "25871"
    default = run("-m", "chatgptfree", "Hi mini")  # the built-in model: the GPT-4o Mini bot
    assert default.output == ANSWER + "Hi mini\n"
    assert site2.ajax_requests("aipkit_cache_sse_message")[-1].form["bot_id"] == "25865"


def test_a_second_bot_on_the_same_page_never_gets_the_first_bots_answers(site2):
    run("chatgptfree", "sites", "add", "one", site2.chat_url, "--bot", "4")
    run("chatgptfree", "sites", "add", "two", site2.chat_url, "--bot", "5")
    run("-m", "chatgptfree/one", "to one")
    run("-m", "chatgptfree/two", "to two")
    bots = [r.form["bot_id"] for r in site2.ajax_requests("aipkit_cache_sse_message")]
    assert bots == ["4", "5"]


# -- conversations, both generations --------------------------------------------------------


def test_system_prompt_goes_into_the_message(either):
    result = run("-m", "chatgptfree", "-o", "site", either.chat_url, "-s", "Be brief.", "Hi")
    assert result.exit_code == 0, result.output
    assert either.upstream[-1][-1]["content"] == "System: Be brief.\nUser: Hi\nAssistant:"


def test_continue_sends_the_whole_conversation_once(either):
    first = run("-m", "chatgptfree", "-o", "site", either.chat_url, "-s", "Be brief.", "A")
    assert first.exit_code == 0, first.output
    second = run("-c", "-o", "site", either.chat_url, "and in French?")
    assert second.exit_code == 0, second.output
    first_answer = ANSWER + "System: Be brief.\nUser: A\nAssistant:"
    seen = either.upstream[-1]
    assert seen[-1]["content"] == (
        f"System: Be brief.\nUser: A\nAssistant: {first_answer}\nUser: and in French?\nAssistant:"
    )
    assert [m["role"] for m in seen].count("assistant") == 0, "no server-side history"
    rows = logged_responses()
    assert len(rows) == 2 and rows[0]["conversation_id"] == rows[1]["conversation_id"]


def test_chat_keeps_three_turns_each_reaching_the_model_once(either):
    result = run(
        "chat", "-m", "chatgptfree", "-o", "site", either.chat_url,
        input="first\nsecond\nthird\nquit\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    messages = [seen[-1]["content"] for seen in either.upstream]
    assert messages[0] == "first"
    assert messages[1] == f"User: first\nAssistant: {ANSWER}first\nUser: second\nAssistant:"
    second_answer = ANSWER + messages[1]  # the stand-in model echoes what it was sent
    assert messages[2] == (
        f"User: first\nAssistant: {ANSWER}first\nUser: second\nAssistant: {second_answer}\n"
        "User: third\nAssistant:"
    )
    assert all(len(seen) <= 2 for seen in either.upstream), "no earlier turn from the server"
    assert either.page_gets == 1, "the chat box is read once per chat"
    assert [row["prompt"] for row in logged_responses()] == ["first", "second", "third"]


def test_chat_keeps_the_system_prompt_on_later_turns(either):
    run(
        "chat", "-m", "chatgptfree", "-o", "site", either.chat_url, "-s", "Be brief.",
        input="one\ntwo\nquit\n",
    )  # fmt: skip
    messages = [seen[-1]["content"] for seen in either.upstream]
    assert len(messages) == 2
    assert all(m.startswith("System: Be brief.\nUser: one\n") for m in messages)


def test_no_stream(either):
    result = run("-m", "chatgptfree", "-o", "site", either.chat_url, "--no-stream", "Hi")
    assert (result.exit_code, result.output) == (0, ANSWER + "Hi\n")


def test_python_conversations_sync_and_async(either):
    model = llm.get_model("chatgptfree")
    conversation = model.conversation()
    conversation.prompt("one", site=either.chat_url).text()
    assert conversation.prompt("two", site=either.chat_url).text().endswith("User: two\nAssistant:")

    async def ask() -> list[str]:
        model = llm.get_async_model("chatgptfree")
        conversation = model.conversation()
        first = await conversation.prompt("a", site=either.chat_url).text()
        second = await conversation.prompt("b", site=either.chat_url).text()
        return [first, second]

    first, second = asyncio.run(ask())
    assert first == ANSWER + "a"
    assert second == f"{ANSWER}User: a\nAssistant: {ANSWER}a\nUser: b\nAssistant:"


def test_a_second_process_reuses_the_page_read_by_the_first(either, monkeypatch):
    run("-m", "chatgptfree", "-o", "site", either.chat_url, "one")
    # a new process starts with an empty in-memory cache and reads the file
    monkeypatch.setattr(llm_chatgptfree, "PAGE_CACHE", llm_chatgptfree.PageCache())
    run("-m", "chatgptfree", "-o", "site", either.chat_url, "two")
    assert either.page_gets == 1


def test_the_session_id_and_client_id_are_kept(either, user_dir):
    run("-m", "chatgptfree", "-o", "site", either.chat_url, "one")
    run("-m", "chatgptfree", "-o", "site", either.chat_url, "two")
    kept = (user_dir / "chatgptfree" / "identity.json").read_text()
    if either.generation == "2.x":
        ids = {r.query["session_id"] for r in either.ajax_requests("aipkit_frontend_chat_stream")}
    else:
        ids = {r.form["wpaicg_chat_client_id"] for r in either.requests if r.method == "POST"}
    assert len(ids) == 1 and ids.pop() in kept


def test_a_blank_prompt_is_refused_before_any_request(either):
    result = run("-m", "chatgptfree", "-o", "site", either.chat_url, "   ")
    assert result.exit_code == 1
    assert result.output.strip() == "Error: The prompt is empty: nothing was sent."
    assert either.requests == []


def test_a_site_that_moved_from_1x_to_2x():
    with AIPowerSite("1.8.96") as old:
        url = old.chat_url
        run("-m", "chatgptfree", "-o", "site", url, "before")
        port = old.port
    with AIPowerSite("2.4.71", port=port) as new:
        result = run("-m", "chatgptfree", "-o", "site", url, "after")
        assert (result.exit_code, result.output) == (0, ANSWER + "after\n")
        assert new.page_gets == 1  # the cached 1.x box met '0': the page was read again
