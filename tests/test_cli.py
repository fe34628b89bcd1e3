"""End to end through llm's own command line, against the local AI Power site."""

from __future__ import annotations

import re

import llm

import llm_chatgptfree
from tests.conftest import logged_responses, logs_json, run

ANSWER = "Hello from the fake upstream. You said: "


def test_models_lists_a_readable_line():
    result = run("models")
    assert result.exit_code == 0
    assert (
        "ChatgptFree: gpt-4o-mini-2024-07-18 (free chat of chatgptfree.ai) "
        "(aliases: chatgptfree)" in result.output
    )


def test_gpt_4o_mini_stays_openai():
    assert type(llm.get_model("gpt-4o-mini")).__name__ == "Chat"
    assert llm.get_model("gpt-4o-mini").model_id == "gpt-4o-mini"
    assert type(llm.get_model("gpt-4o-mini-2024-07-18")).__name__ == "ChatgptFree"
    assert type(llm.get_model("chatgptfree")).__name__ == "ChatgptFree"
    assert type(llm.get_async_model("chatgptfree")).__name__ == "AsyncChatgptFree"


def test_users_can_opt_in_to_the_gpt_4o_mini_alias():
    result = run("aliases", "set", "gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    assert result.exit_code == 0, result.output
    assert type(llm.get_model("gpt-4o-mini")).__name__ == "ChatgptFree"


def test_prompt_streams_the_answer_and_sends_the_plugin_form(site, user_dir):
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
    assert form["post_id"] == "6"
    assert form["url"] == site.base_url + "/chat"
    assert form["bot_id"] == "0"
    assert form["chatbot_identity"] == "shortcode"
    assert re.fullmatch(r"[A-Za-z0-9]{10}", form["wpaicg_chat_client_id"])
    assert form["wpaicg_chat_history"] == "[]"
    assert 1 <= int(form["chat_id"]) <= 100_000
    assert form["message"] == "Hi there"
    assert site.upstream[-1][-1] == {"role": "user", "content": "Hi there"}


def test_the_client_id_is_kept(site, user_dir):
    run("-m", "chatgptfree", "-o", "site", site.chat_url, "one")
    run("-m", "chatgptfree", "-o", "site", site.chat_url, "two")
    ids = {r.form["wpaicg_chat_client_id"] for r in site.requests if r.method == "POST"}
    assert len(ids) == 1
    assert (user_dir / "chatgptfree" / "client_id").read_text().strip() in ids


def test_site_from_the_environment(site, monkeypatch):
    monkeypatch.setenv("CHATGPTFREE_SITE", site.bot_url)
    result = run("-m", "chatgptfree", "Hi bot")
    assert result.exit_code == 0, result.output
    assert result.output == ANSWER + "Hi bot\n"
    form = site.requests[-1].form
    assert (form["post_id"], form["bot_id"]) == ("7", "4")
    assert form["chatbot_identity"] == "custom_bot_4"


def test_logs_record_the_turn_without_inventing_usage(site, user_dir):
    run("-m", "chatgptfree", "-o", "site", site.chat_url, "Log me")
    [row] = logged_responses()
    assert row["model"] == "gpt-4o-mini-2024-07-18"
    assert row["response"] == ANSWER + "Log me"
    assert row["input_tokens"] is None and row["output_tokens"] is None
    details = row["response_json"]
    assert details == {
        "site": site.chat_url,
        "post_id": "6",
        "bot_id": "0",
        "mode": "sse",
        "finish_reason": "stop",
        "id": details["id"],
        "model": "gpt-4o-mini-2024-07-18",
    }
    assert details["id"].startswith("chatcmpl-")
    assert row["options_json"] == {"site": site.chat_url}
    assert row["resolved_model"] == "gpt-4o-mini-2024-07-18"
    [entry] = logs_json("-n", "1")
    assert entry["response"] == ANSWER + "Log me"
    assert run("logs", "-n", "1").output.count("Log me") >= 2


def test_system_prompt_goes_into_the_message(site):
    result = run("-m", "chatgptfree", "-o", "site", site.chat_url, "-s", "Be brief.", "Hi")
    assert result.exit_code == 0, result.output
    assert site.requests[-1].form["message"] == "System: Be brief.\nUser: Hi\nAssistant:"
    assert site.upstream[-1][-1]["content"] == "System: Be brief.\nUser: Hi\nAssistant:"


def test_continue_sends_the_whole_conversation_and_the_system_prompt(site, user_dir):
    first = run("-m", "chatgptfree", "-o", "site", site.chat_url, "-s", "Be brief.", "A")
    assert first.exit_code == 0, first.output
    second = run("-c", "-o", "site", site.chat_url, "and in French?")
    assert second.exit_code == 0, second.output
    first_answer = ANSWER + "System: Be brief.\nUser: A\nAssistant:"
    assert site.requests[-1].form["message"] == (
        f"System: Be brief.\nUser: A\nAssistant: {first_answer}\nUser: and in French?\nAssistant:"
    )
    rows = logged_responses()
    assert len(rows) == 2 and rows[0]["conversation_id"] == rows[1]["conversation_id"]


def test_chat_keeps_three_turns_of_context(site, user_dir):
    result = run(
        "chat", "-m", "chatgptfree", "-o", "site", site.chat_url,
        input="first\nsecond\nthird\nquit\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    messages = [r.form["message"] for r in site.requests if r.method == "POST"]
    assert messages[0] == "first"
    assert messages[1] == f"User: first\nAssistant: {ANSWER}first\nUser: second\nAssistant:"
    assert messages[2].startswith("User: first\n") and messages[2].endswith(
        "\nUser: third\nAssistant:"
    )
    assert "User: second" in messages[2]
    assert site.page_gets == 1, "the chat box is scraped once per chat"
    assert [row["prompt"] for row in logged_responses()] == [
        "first",
        "second",
        "third",
    ]


def test_chat_keeps_the_system_prompt_on_later_turns(site):
    result = run(
        "chat", "-m", "chatgptfree", "-o", "site", site.chat_url, "-s", "Be brief.",
        input="one\ntwo\nquit\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    messages = [r.form["message"] for r in site.requests if r.method == "POST"]
    assert all(m.startswith("System: Be brief.\nUser: one\n") for m in messages)


def test_no_stream(site):
    result = run("-m", "chatgptfree", "-o", "site", site.chat_url, "--no-stream", "Hi")
    assert result.exit_code == 0, result.output
    assert result.output == ANSWER + "Hi\n"


def test_json_answers_of_a_custom_bot(site):
    result = run("-m", "chatgptfree", "-o", "site", site.bot_url, "Hi bot")
    assert result.exit_code == 0, result.output
    assert result.output == ANSWER + "Hi bot\n"
    [entry] = logs_json("-n", "1")
    assert entry["response_json"]["mode"] == "json"


def test_a_second_process_reuses_the_scraped_chat_box(site, monkeypatch):
    run("-m", "chatgptfree", "-o", "site", site.chat_url, "one")
    # a new process starts with an empty in-memory cache and reads the file
    monkeypatch.setattr(llm_chatgptfree, "PAGE_CACHE", llm_chatgptfree.PageCache())
    run("-m", "chatgptfree", "-o", "site", site.chat_url, "two")
    assert (site.page_gets, site.ajax_posts) == (1, 2)


def test_the_empty_prompt_is_refused_before_any_request(site):
    result = run("-m", "chatgptfree", "-o", "site", site.chat_url, "   ")
    assert result.exit_code == 1
    assert result.output.strip() == "Error: The prompt is empty: nothing was sent."
    assert site.requests == []
