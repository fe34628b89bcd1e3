"""A conversation stays with the site it began on. llm does not carry ``-o site`` into
``llm -c`` (and hands ``execute`` no earlier responses), so the plugin keeps each
conversation's page by its id: ``-c`` goes back there, even when the default site has
changed since, and ``-c -o site OTHER`` is refused with a sentence naming both."""

from __future__ import annotations

import asyncio
import json

import llm
import pytest

import llm_chatgptfree
from tests.aipower_site import AIPowerSite
from tests.conftest import logged_responses, run


@pytest.fixture
def elsewhere(monkeypatch: pytest.MonkeyPatch):
    """The default site (``$CHATGPTFREE_SITE``): where a conversation must not move to."""
    with AIPowerSite("2.4.71") as default:
        monkeypatch.setenv("CHATGPTFREE_SITE", default.chat_url)
        yield default


def test_llm_c_goes_back_to_the_site_the_conversation_began_on(each_generation, elsewhere):
    first = run("-m", "chatgptfree", "-o", "site", each_generation.chat_url, "one")
    assert first.exit_code == 0, first.output
    second = run("-c", "two")
    assert second.exit_code == 0, second.output
    assert "You said: User: one" in second.output  # the history went with it
    assert elsewhere.requests == []
    assert [r["response_json"]["site"] for r in logged_responses()] == [
        each_generation.chat_url
    ] * 2


def test_llm_c_with_another_site_is_refused_naming_both(each_generation, elsewhere):
    assert run("-m", "chatgptfree", "-o", "site", each_generation.chat_url, "one").exit_code == 0
    each_generation.reset_counts()
    result = run("-c", "-o", "site", elsewhere.chat_url, "two")
    assert result.exit_code == 1
    assert result.output == (
        f"Error: This conversation is with {each_generation.chat_url}, not {elsewhere.chat_url}: "
        "continue it without -o site, or start a new one (without -c) to talk to that site.\n"
    )
    assert (elsewhere.requests, each_generation.requests) == ([], [])
    # the same site, named again, is no move
    assert run("-c", "-o", "site", each_generation.chat_url, "three").exit_code == 0


def test_llm_chat_c_goes_back_there_too(plain_site, elsewhere):
    assert run("-m", "chatgptfree", "-o", "site", plain_site.chat_url, "one").exit_code == 0
    result = run("chat", "-c", input="two\nquit\n")
    assert result.exit_code == 0, result.output
    assert "You said: User: one" in result.output
    assert elsewhere.requests == []


def test_a_python_conversation_keeps_its_site_when_later_prompts_name_none(plain_site, elsewhere):
    conversation = llm.get_model("chatgptfree").conversation()
    assert "one" in conversation.prompt("one", site=plain_site.chat_url).text()
    assert "User: one" in conversation.prompt("two").text()

    async def in_asyncio() -> str:
        chat = llm.get_async_model("chatgptfree").conversation()
        await chat.prompt("one", site=plain_site.chat_url).text()
        return await chat.prompt("two").text()

    assert "User: one" in asyncio.run(in_asyncio())
    assert elsewhere.requests == []


def test_a_conversations_file_that_cannot_be_read_stops_llm_c_before_it_sends(
    plain_site, elsewhere, user_dir
):
    assert run("-m", "chatgptfree", "-o", "site", plain_site.chat_url, "one").exit_code == 0
    path = user_dir / "chatgptfree" / "conversations.json"
    assert list(json.loads(path.read_text()).values())[0]["site"] == plain_site.chat_url
    path.write_text("{not json")
    result = run("-c", "two")
    assert result.output == f"Error: {path} is not valid JSON: fix it or remove it.\n"
    assert elsewhere.requests == []


# -- a conversation that outgrows one message ---------------------------------------------


def long_history(turns: int, size: int) -> list:
    history = [llm.system("Be brief.")]
    for n in range(turns):
        history += [
            llm.user(f"question {n} " + "q" * size),
            llm.assistant(f"answer {n} " + "a" * size),
        ]
    return history


def test_a_conversation_over_the_budget_sends_its_latest_turns_and_says_so(plain_site, capsys):
    from tests.test_chat import sent_messages

    model = llm.get_model("chatgptfree")
    response = model.prompt(
        "the last one", messages=long_history(200, 500), site=plain_site.chat_url
    )
    assert "the last one" in response.text()
    message = sent_messages(plain_site)[-1]
    assert len(message) <= llm_chatgptfree.MESSAGE_BUDGET
    assert message.startswith("System: Be brief.\nUser: question ")
    assert "question 0 " not in message and "answer 199 " in message
    assert message.endswith("User: the last one\nAssistant:")
    left_out = response.json()["messages_left_out"]
    assert left_out % 2 == 0 and 200 < left_out < 400  # whole turns, question and answer
    assert capsys.readouterr().err == (
        "llm-chatgptfree: this conversation is over 100,000 characters, so its first "
        f"{left_out} messages were not sent: the model sees the latest ones only.\n"
    )


def test_a_conversation_within_the_budget_is_sent_whole(plain_site, capsys):
    from tests.test_chat import sent_messages

    model = llm.get_model("chatgptfree")
    response = model.prompt(
        "the last one", messages=long_history(50, 500), site=plain_site.chat_url
    )
    response.text()
    assert "question 0 " in sent_messages(plain_site)[-1]
    assert "messages_left_out" not in response.json()
    assert capsys.readouterr().err == ""


def test_the_conversations_file_is_written_once_per_conversation(plain_site, user_dir):
    path = user_dir / "chatgptfree" / "conversations.json"
    assert run("-m", "chatgptfree", "-o", "site", plain_site.chat_url, "one").exit_code == 0
    written = path.stat().st_mtime_ns, path.read_bytes()
    for turn in ("two", "three"):
        assert run("-c", turn).exit_code == 0
    assert (path.stat().st_mtime_ns, path.read_bytes()) == written
