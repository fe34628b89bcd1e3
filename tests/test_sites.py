"""Saved sites and their bots as models, ``refresh``, ``probe`` and ``cache clear``,
through llm's command line, for both generations."""

from __future__ import annotations

import asyncio
import json
import re

import llm
import pytest

from tests.aipower_site import AIPowerSite, Fault, PageVariant
from tests.conftest import logs_json, run

ANSWER = "Hello from the fake upstream. You said: "


def test_a_saved_1x_site_is_a_model_everywhere(site, user_dir):
    result = run("chatgptfree", "sites", "add", "local", site.chat_url)
    assert (result.exit_code, result.output) == (
        0,
        f"Saved {site.chat_url} as the model chatgptfree/local\n",
    )
    assert f"ChatgptFree: chatgptfree/local (chat box of {site.chat_url})" in run("models").output
    assert run("chatgptfree", "sites", "list").output == f"chatgptfree/local: {site.chat_url}\n"
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


def test_a_saved_2x_site_with_several_bots_gives_a_model_per_bot(site2):
    result = run("chatgptfree", "sites", "add", "local", site2.chat_url)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == [
        "  chatgptfree/local/customer-support: Customer Support via OpenAI, bot 4",
        "  chatgptfree/local/second-bot: Second Bot via OpenAI, bot 5",
    ]
    host = site2.base_url.removeprefix("http://")
    models = run("models").output
    assert f"ChatgptFree: chatgptfree/local (chat box of {site2.chat_url})" in models
    assert (
        f"ChatgptFree: chatgptfree/local/second-bot (Second Bot via OpenAI, bot 5 of {host})"
        in models
    )
    for model, bot in [("chatgptfree/local", "4"), ("chatgptfree/local/second-bot", "5")]:
        answer = run("-m", model, f"to {bot}")
        assert answer.output == ANSWER + f"to {bot}\n"
        assert site2.ajax_requests("aipkit_cache_sse_message")[-1].form["bot_id"] == bot
    listed = json.loads(run("chatgptfree", "sites", "list", "--json").output)
    assert listed == [
        {
            "name": "local",
            "url": site2.chat_url,
            "bot": None,
            "model_id": "chatgptfree/local",
            "bots": ["chatgptfree/local/customer-support", "chatgptfree/local/second-bot"],
        }
    ]


def test_the_built_in_model_stays_chatgptfree_ai(site):
    run("chatgptfree", "sites", "add", "local", site.chat_url)
    assert llm.get_model("chatgptfree").target.site is None
    assert str(llm.get_model("gpt-4o-mini-2024-07-18")).endswith(
        "(free chat of chatgptfree.ai, its GPT-4o Mini bot)"
    )


def test_a_bot_picks_its_1x_chat_box(site):
    site.page_variant = "several"
    run("chatgptfree", "sites", "add", "plain", site.chat_url, "--bot", "0")
    assert run("chatgptfree", "sites", "list").output.endswith("(bot 0)\n")
    assert run("-m", "chatgptfree/plain", "Hi").output == ANSWER + "Hi\n"
    form = site.requests[-1].form
    assert (form["bot_id"], form["chatbot_identity"]) == ("0", "shortcode")


def test_removing_a_site(each_generation):
    either = each_generation
    run("chatgptfree", "sites", "add", "local", either.chat_url)
    assert run("chatgptfree", "sites", "remove", "local").output == "Removed chatgptfree/local\n"
    assert "chatgptfree/local" not in run("models").output
    assert run("chatgptfree", "sites", "list").output.startswith("No saved sites.")


def test_a_site_whose_page_cannot_be_read_now_is_saved_anyway(each_generation):
    either = each_generation
    url = either.chat_url
    either.stop()
    result = run("chatgptfree", "sites", "add", "later", url)
    assert result.exit_code == 0
    assert result.output.startswith(f"Saved {url} as the model chatgptfree/later\n")
    assert "Its bots could not be read now (Could not reach" in result.output
    assert "run 'llm chatgptfree refresh later' later." in result.output


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["add", "Bad Name", "https://x.test/"], "Invalid value for NAME: use lower-case"),
        (["add", "ok", "ftp://x.test/"], "Invalid value for URL: 'ftp://x.test/': site must be"),
        (["add", "ok", "https://x.test/", "--bot", "x"], "Invalid value for --bot: a bot id"),
        (["add", "ok", "https://u:p@x.test/"], "must not carry a user name or password"),
        (["add", "ok", "http://[::1"], "Invalid value for URL"),
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


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ('{"format": 1, "sites": {', "is not valid JSON: fix it or remove it."),
        ("[]", "is not a sites file of this plugin: fix or remove it."),
        ('{"format": 1, "sites": {"x": 3}}', "the entry 'x' has no usable url: fix or remove it."),
        ("[" * 100_000, "is not valid JSON: fix it or remove it."),
    ],
    ids=["broken", "list", "entry", "deep"],
)
def test_a_hand_broken_sites_file_is_reported_never_overwritten(user_dir, content, error):
    path = user_dir / "chatgptfree" / "sites.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    for args in (["list"], ["add", "x", "https://x.test/"], ["remove", "x"]):
        result = run("chatgptfree", "sites", *args)
        assert result.exit_code == 1
        assert result.output.startswith(f"Error: {path}")
        assert result.output.rstrip().endswith(error)
    assert path.read_text() == content
    models = run("models")
    assert models.exit_code == 0
    assert "ChatgptFree: gpt-4o-mini-2024-07-18" in models.output
    assert f"llm-chatgptfree: saved sites ignored: {path}" in models.output


def test_refresh_names_and_errors(site2, monkeypatch):
    monkeypatch.setenv("CHATGPTFREE_SITE", site2.chat_url)
    run("chatgptfree", "sites", "add", "other", site2.bot_url)
    result = run("chatgptfree", "refresh")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"{site2.chat_url}: AI Power 2.4.71, 2 bots",
        "  chatgptfree/customer-support: Customer Support via OpenAI, bot 4",
        "  chatgptfree/second-bot: Second Bot via OpenAI, bot 5",
        f"{site2.bot_url}: AI Power 2.4.71, 1 bot",
        "  chatgptfree/other/second-bot: Second Bot via OpenAI, bot 5",
    ]
    site2.page_faults = [Fault.HTTP_500]
    failed = run("chatgptfree", "refresh", "other")
    assert failed.exit_code == 1
    assert "answered HTTP 500 Internal Server Error" in failed.output
    assert run("chatgptfree", "refresh", "nosuch").output.startswith("Error: No saved site named")


def test_refresh_of_a_1x_site_says_it_has_one_chat_box(site, monkeypatch):
    monkeypatch.setenv("CHATGPTFREE_SITE", site.chat_url)
    result = run("chatgptfree", "refresh")
    assert result.output == f"{site.chat_url}: AI Power 1.8.96 (1.x), one chat box: no bot models\n"


def probe(*args: str):
    result = run("chatgptfree", "probe", *args)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_probe_a_working_1x_site(site):
    code, output = probe(site.chat_url)
    assert code == 0, output
    lines = output.splitlines()
    assert re.fullmatch(rf"Page\s+{re.escape(site.chat_url)}: HTTP 200 in \d+\.\d\d s", lines[0])
    assert re.fullmatch(r"Plugin\s+AI Power 1\.8\.96; chat generation 1\.x", lines[1])
    assert re.fullmatch(r"Bot 0\s+1\.x shortcode chat box, post 6", lines[2])
    assert re.fullmatch(r"Nonce\s+accepted \(admin-ajax answered in \d+\.\d\d s\)", lines[3])
    assert re.fullmatch(r"Verdict\s+ready: this site can answer", lines[4])
    assert site.upstream == [], "the nonce check costs no model call"


def test_probe_a_working_2x_site_and_every_bot(site2):
    code, output = probe(site2.chat_url, "--send")
    assert code == 0, output
    lines = [re.sub(r"\d+\.\d\d s", "T s", line) for line in output.splitlines()]
    assert lines == [
        f"Page     {site2.chat_url}: HTTP 200 in T s",
        "Plugin   AI Power 2.4.71; chat generation 2.x, nonce refresh available",
        "Bot 4    'Customer Support' (OpenAI), inline, post 7",
        "Bot 5    'Second Bot' (OpenAI), inline, post 7",
        "Nonce    accepted (admin-ajax answered in T s)",
        f"Bot 4    answered '{ANSWER}Say OK' in T s",
        f"Bot 5    answered '{ANSWER}Say OK' in T s",
        "Verdict  ready: this site can answer",
    ]
    assert len(site2.upstream) == 2, "one model call per bot, none for the nonce check"


def test_probe_with_send_says_which_bot_fails(site2):
    site2.faults = [Fault.QUOTA]
    code, output = probe(site2.chat_url, "--send")
    assert code == 0
    assert re.search(r"Bot 4\s+failed: .* says: You have reached your quota", output)
    assert re.search(r"Bot 5\s+answered", output)


@pytest.mark.parametrize(
    ("release", "set_up", "expected"),
    [
        ("1.8.96", lambda s: setattr(s, "page_variant", "cloudflare_403"), r"Blocked\s+a Cloud"),
        ("2.4.71", lambda s: setattr(s, "page_faults", [Fault.CLOUDFLARE_403]), r"Blocked\s+a "),
        ("1.8.96", lambda s: setattr(s, "page_variant", "no_chatbox"), r"Chat box\s+none with"),
        ("1.8.96", lambda s: setattr(s, "page_nonce_override", "0123456789"),
         r"Nonce\s+rejected: HTTP 403"),
        ("2.4.71", lambda s: setattr(s, "page_nonce_override", "0123456789"),
         r"Nonce\s+rejected: HTTP 403 'Your session has expired"),
        ("2.4.71", lambda s: setattr(s, "fault", Fault.HTTP_500), r"Nonce\s+not checked: HTTP 500"),
    ],
    ids=["cloudflare-1x", "cloudflare-2x", "no-chat-box", "stale-1x", "stale-2x", "http-500"],
)  # fmt: skip
def test_probe_says_why_a_site_cannot_answer(release, set_up, expected):
    with AIPowerSite(release) as site:
        set_up(site)
        code, output = probe(site.chat_url)
    assert code == 1
    assert re.search(expected, output), output
    assert output.endswith("Verdict   not usable as it is\n") or "not usable" in output


def test_probe_an_unreachable_site_and_bad_input(site):
    url = site.chat_url
    site.stop()
    code, output = probe(url)
    assert code == 1 and re.search(r"Page\s+http://127\.0\.0\.1:\d+/chat/ unreachable: ", output)
    for args in ([url, "--timeout", "-1"], ["http://[::1"], ["ftp://x.test/"]):
        code, output = probe(*args)
        assert code == 2 and "Error: Invalid value" in output


def test_probe_the_chatgptfree_page_lists_its_nine_bots(site2):
    site2.page_variant = PageVariant.CHATGPTFREE
    code, output = probe(site2.home_url)
    assert code == 0, output
    assert re.search(r"Bot 25871\s+'GPT-5 Nano'", output)
    assert len(re.findall(r"^Bot \d+ ", output, re.MULTILINE)) == 9


def test_cache_clear(each_generation, monkeypatch):
    either = each_generation
    run("chatgptfree", "sites", "add", "local", either.chat_url)
    run("-m", "chatgptfree/local", "Hi")
    assert run("chatgptfree", "cache", "clear", "local").output == (
        "Forgot the chat boxes of 1 page\n"
    )
    run("-m", "chatgptfree/local", "Hi")
    monkeypatch.setenv("CHATGPTFREE_SITE", either.chat_url)
    run("-m", "chatgptfree", "Hi")
    assert run("chatgptfree", "cache", "clear").output == "Forgot the chat boxes of 1 page\n"
    for name in ("nosuch", "http://[::1"):
        result = run("chatgptfree", "cache", "clear", name)
        assert result.exit_code != 0 and "Traceback" not in result.output
