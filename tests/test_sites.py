"""Saved sites as models, ``probe`` and ``cache clear``, through llm's command line."""

from __future__ import annotations

import asyncio
import json
import re

import llm
import pytest

from tests.conftest import logs_json, run

ANSWER = "Hello from the fake upstream. You said: "


def test_a_saved_site_is_a_model_everywhere(site, user_dir):
    result = run("chatgptfree", "sites", "add", "local", site.chat_url)
    assert (result.exit_code, result.output) == (
        0,
        f"Saved {site.chat_url} as the model chatgptfree/local\n",
    )
    assert f"ChatgptFree: chatgptfree/local (chat box of {site.chat_url})" in run("models").output
    assert run("chatgptfree", "sites", "list").output == (f"chatgptfree/local: {site.chat_url}\n")
    first = run("-m", "chatgptfree/local", "Hi")
    assert (first.exit_code, first.output) == (0, ANSWER + "Hi\n")
    again = run("-c", "and again")
    assert again.exit_code == 0, again.output
    assert site.requests[-1].form["message"] == (
        f"User: Hi\nAssistant: {ANSWER}Hi\nUser: and again\nAssistant:"
    )
    assert [entry["model"] for entry in logs_json("-n", "0")] == ["chatgptfree/local"] * 2
    chat = run("chat", "-m", "chatgptfree/local", input="one\nquit\n")
    assert chat.exit_code == 0 and ANSWER + "one" in chat.output
    async_answer = asyncio.run(llm.get_async_model("chatgptfree/local").prompt("A").text())
    assert async_answer == ANSWER + "A"
    stored = json.loads((user_dir / "chatgptfree" / "sites.json").read_text())
    assert stored == {"format": 1, "sites": {"local": {"url": site.chat_url}}}


def test_the_built_in_model_stays_chatgptfree_ai(site):
    run("chatgptfree", "sites", "add", "local", site.chat_url)
    assert llm.get_model("chatgptfree").site is None
    assert str(llm.get_model("gpt-4o-mini-2024-07-18")).endswith("(free chat of chatgptfree.ai)")


def test_a_bot_picks_its_chat_box(site):
    site.page_variant = "several"
    run("chatgptfree", "sites", "add", "plain", site.chat_url, "--bot", "0")
    assert run("chatgptfree", "sites", "list").output.endswith("(bot 0)\n")
    assert run("-m", "chatgptfree/plain", "Hi").output == ANSWER + "Hi\n"
    form = site.requests[-1].form
    assert (form["bot_id"], form["chatbot_identity"]) == ("0", "shortcode")


def test_removing_a_site(site):
    run("chatgptfree", "sites", "add", "local", site.chat_url)
    assert run("chatgptfree", "sites", "remove", "local").output == "Removed chatgptfree/local\n"
    assert "chatgptfree/local" not in run("models").output
    assert run("chatgptfree", "sites", "list").output.startswith("No saved sites.")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["add", "Bad Name", "https://x.test/"], "Invalid value for NAME: use lower-case"),
        (["add", "ok", "ftp://x.test/"], "Invalid value for URL: 'ftp://x.test/' is not an http"),
        (["add", "ok", "https://x.test/", "--bot", "x"], "Invalid value for --bot: a bot id"),
        (["remove", "nosuch"], "Error: No saved site named 'nosuch' (saved: none yet)."),
    ],
)
def test_bad_input_gets_one_clear_error(args, error):
    result = run("chatgptfree", "sites", *args)
    assert result.exit_code != 0
    assert error in result.output
    assert "Traceback" not in result.output


def test_a_duplicate_name_is_refused(site):
    run("chatgptfree", "sites", "add", "local", site.chat_url)
    result = run("chatgptfree", "sites", "add", "local", "https://x.test/")
    assert result.exit_code == 1
    assert result.output == (
        f"Error: A site named 'local' exists already ({site.chat_url}); remove it first "
        "with 'llm chatgptfree sites remove local'.\n"
    )


def test_a_hand_broken_sites_file_is_reported_never_overwritten(user_dir):
    path = user_dir / "chatgptfree" / "sites.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"format": 1, "sites": {')
    for args in (["list"], ["add", "x", "https://x.test/"], ["remove", "x"]):
        result = run("chatgptfree", "sites", *args)
        assert result.exit_code == 1
        assert result.output.startswith(f"Error: {path} is not valid JSON (")
        assert result.output.endswith("): fix it or remove it.\n")
    assert path.read_text() == '{"format": 1, "sites": {'
    models = run("models")
    assert models.exit_code == 0
    assert "ChatgptFree: gpt-4o-mini-2024-07-18" in models.output
    assert f"llm-chatgptfree: saved sites ignored: {path} is not valid JSON" in models.output


def probe(*args: str):
    result = run("chatgptfree", "probe", *args)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_probe_a_working_site(site):
    code, output = probe(site.chat_url)
    assert code == 0, output
    lines = output.splitlines()
    assert re.fullmatch(rf"Page\s+{re.escape(site.chat_url)}: HTTP 200 in \d+\.\d\d s", lines[0])
    assert re.fullmatch(r"Chat box 1\s+shortcode, post 6, bot 0, streaming on", lines[1])
    assert re.fullmatch(r"Plugin\s+AI Power 1\.8\.96 \(from its asset URLs\)", lines[2])
    assert re.fullmatch(r"Nonce\s+accepted \(admin-ajax answered in \d+\.\d\d s\)", lines[3])
    assert re.fullmatch(r"Verdict\s+ready: this site can answer", lines[4])
    assert site.upstream == [], "the nonce check costs no model call"


def test_probe_with_send(site):
    code, output = probe(site.bot_url, "--send")
    assert code == 0, output
    assert "streaming off" in output
    assert re.search(r"Prompt\s+answered 'Hello from the fake upstream\. You said: Say OK'", output)


@pytest.mark.parametrize(
    ("set_up", "expected"),
    [
        (lambda s: setattr(s, "page_variant", "cloudflare_403"), r"Blocked\s+Cloudflare"),
        (lambda s: setattr(s, "page_variant", "no_chatbox"), r"Chat box\s+none with a nonce"),
        (lambda s: setattr(s, "page_nonce_override", "0123456789"), r"Nonce\s+rejected: HTTP 403"),
        (lambda s: setattr(s, "fault", "no_ai"), r"Site\s+says: Unable to initialize"),
    ],
    ids=["cloudflare", "no-chat-box", "stale-nonce", "model-down"],
)
def test_probe_says_why_a_site_cannot_answer(site, set_up, expected):
    set_up(site)
    code, output = probe(site.chat_url, "--send")
    assert code == 1
    assert re.search(expected, output), output
    assert output.endswith("not usable as it is\n")


def test_probe_an_unreachable_site(site):
    url = site.chat_url
    site.stop()
    code, output = probe(url)
    assert code == 1
    assert re.match(rf"Page\s+{re.escape(url)} unreachable: ", output)


def test_cache_clear(site):
    run("chatgptfree", "sites", "add", "local", site.chat_url)
    run("-m", "chatgptfree/local", "one")
    assert run("chatgptfree", "cache", "clear", "local").output == "Forgot 1 scraped chat box\n"
    run("-m", "chatgptfree/local", "two")
    assert site.page_gets == 2
    assert run("chatgptfree", "cache", "clear").output == "Forgot 1 scraped chat box\n"
    assert run("chatgptfree", "cache", "clear").output == "Forgot 0 scraped chat boxes\n"
    unknown = run("chatgptfree", "cache", "clear", "nosuch")
    assert unknown.exit_code == 1
    assert unknown.output == "Error: No saved site named 'nosuch' (saved: local).\n"


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("[]", "is not a sites file of this plugin: fix or remove it."),
        ('{"format": 2, "sites": {}}', "is not a sites file of this plugin: fix or remove it."),
        ('{"format": 1, "sites": {"x": 3}}', "the entry 'x' has no url: fix or remove it."),
    ],
)
def test_a_sites_file_of_another_shape_is_reported(user_dir, content, error):
    path = user_dir / "chatgptfree" / "sites.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    result = run("chatgptfree", "sites", "list")
    assert result.exit_code == 1 and error in result.output
    assert path.read_text() == content


def test_a_sites_file_that_cannot_be_written(user_dir):
    (user_dir / "chatgptfree").mkdir(parents=True)
    (user_dir / "chatgptfree" / "sites.json").mkdir()  # a folder where the file should be
    result = run("chatgptfree", "sites", "add", "x", "https://x.test/")
    assert result.exit_code == 1
    assert result.output.startswith("Error: Cannot ")
    assert "Traceback" not in result.output


def test_sites_list_as_json(site):
    run("chatgptfree", "sites", "add", "local", site.chat_url, "--bot", "4")
    assert json.loads(run("chatgptfree", "sites", "list", "--json").output) == [
        {"name": "local", "url": site.chat_url, "bot": "4", "model_id": "chatgptfree/local"}
    ]
