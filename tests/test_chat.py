"""``llm chat`` never ends in a traceback.

``llm chat`` has no error handling of its own: any exception ends the chat with a long
Python traceback. The plugin's errors are ``click.ClickException`` s too, so a failure
ends the chat with one ``Error: …`` line that, once earlier turns were saved, says how to
go on (``llm chat -c``). Blank and whitespace-only lines send nothing and the chat goes on.

The faults play on the second turn of a real ``llm chat`` (click's ``CliRunner``, once in
a real pseudo-terminal), against the local site of both generations and both transports.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlite_utils
from click.testing import Result
from llm.migrations import migrate

import llm_chatgptfree
from tests.aipower_site import AIPowerSite, Fault
from tests.conftest import logged_responses, run

ANSWER = "Hello from the fake upstream. You said: "
HINT = "The conversation so far is saved: continue it with 'llm chat -c'."
FIRST_TRANSCRIPT = f"User: first\nAssistant: {ANSWER}first\n"


# -- helpers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def migrated_logs(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """An empty llm log database, migrated once (migrating takes llm ~0.2 s a time)."""
    path = tmp_path_factory.mktemp("llm-logs") / "logs.db"
    database = sqlite_utils.Database(path)
    migrate(database)
    database.close()
    return path.read_bytes()


@pytest.fixture(autouse=True)
def logs_db(user_dir: Path, migrated_logs: bytes) -> None:
    """Each test's llm directory starts with that database, as after llm's first use."""
    user_dir.mkdir(parents=True, exist_ok=True)
    (user_dir / "logs.db").write_bytes(migrated_logs)


def before_turn(monkeypatch: pytest.MonkeyPatch, actions: dict[int, Callable[[], None]]) -> None:
    """Run ``actions[n]`` just before the plugin starts its n-th exchange (1-based)."""
    original = llm_chatgptfree.Exchange.steps
    started = 0

    def steps(self):
        nonlocal started
        started += 1
        if started in actions:
            actions[started]()
        return original(self)

    monkeypatch.setattr(llm_chatgptfree.Exchange, "steps", steps)


def chat(*args: str, input: str) -> Result:
    """The real ``llm chat`` with the plugin's model, fed ``input``."""
    return run("chat", *args, input=input)


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "Error:" in line]


def assert_one_error_line(result: Result, *, hint: bool) -> str:
    """The chat ended with exit code 1 and exactly one ``Error: …`` line, on stderr, last;
    no traceback. Returns that line."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    [line] = error_lines(result.output)
    assert line.startswith("Error: "), result.output
    assert result.output.endswith(line + "\n"), "the error is the chat's last line"
    assert result.stderr == line + "\n", "the error alone is on stderr"
    assert line.endswith(HINT) is hint, line
    assert line.count("llm chat -c") == int(hint)
    return line


def sent_messages(site: AIPowerSite) -> list[str]:
    """The ``message`` field of every request that carried one (1.x POST, 2.x cache step)."""
    return [r.fields["message"] for r in site.ajax_requests() if "message" in r.fields]


def model_saw(site: AIPowerSite) -> list[str]:
    """The last message the stand-in model got, per call."""
    return [messages[-1]["content"] for messages in site.upstream]


# -- a failure on turn two that the single retry does not cure --------------------------


def stop(site: AIPowerSite) -> None:
    site.stop()


def lasting(fault: Fault) -> Callable[[AIPowerSite], None]:
    def arm(site: AIPowerSite) -> None:
        site.fault = fault

    return arm


def quota(site: AIPowerSite) -> None:
    """2.x: the guest quota; 1.x has no quota, its nearest is the token limit."""
    site.fault = Fault.QUOTA if site.generation == "2.x" else Fault.TOKEN_LIMIT


# name: (arm the fault on turn two, a phrase of the error sentence)
TURN_TWO_FAULTS: dict[str, tuple[Callable[[AIPowerSite], None], str]] = {
    "http-503-twice": (lasting(Fault.HTTP_503), "503"),
    "site-gone": (stop, "Could not reach"),
    "cut-after-some-text": (lasting(Fault.CUT), "broke off"),
    "cloudflare-challenge": (lasting(Fault.CLOUDFLARE_503), "Cloudflare challenge"),
    "quota": (quota, "quota|token limit"),
}


@pytest.mark.parametrize("fault", list(TURN_TWO_FAULTS))
def test_a_lasting_failure_on_turn_two_ends_the_chat_with_one_error_line(
    either, fault, monkeypatch
):
    site = either
    monkeypatch.setenv("CHATGPTFREE_SITE", site.chat_url)
    arm, phrase = TURN_TWO_FAULTS[fault]
    before_turn(monkeypatch, {2: lambda: arm(site)})

    result = chat("-m", "chatgptfree", input="first\nsecond\nthird\nquit\n")

    line = assert_one_error_line(result, hint=True)
    assert re.search(phrase, line), line
    assert f"> first\n{ANSWER}first\n> second\n" in result.output, "turn one was answered"
    assert not any("third" in message for message in sent_messages(site)), "the chat ended"
    if fault == "cut-after-some-text":
        # the partial answer is shown, on a line of its own, and the error on the next
        partial = result.output.split("> second\n", 1)[1].split("\n")[0]
        assert partial and ANSWER.startswith(partial) and partial != ANSWER, result.output
        assert f"> second\n{partial}\nError: " in result.output
    else:
        assert "> second\nError: " in result.output, "nothing but the error after turn two"

    # the saved conversation goes on with `llm chat -c`; the model sees turn one
    site.fault = None
    if fault == "site-gone":
        site._port = site.port  # back where it was: a conversation never moves to another site
        site.start()
    resumed = chat("-c", input="fourth\nquit\n")
    assert resumed.exit_code == 0, resumed.output
    assert "Error" not in resumed.output and "Traceback" not in resumed.output
    assert model_saw(site)[-1] == FIRST_TRANSCRIPT + "User: fourth\nAssistant:"
    rows = logged_responses()
    assert [row["prompt"] for row in rows] == ["first", "fourth"], "a failed turn is not saved"
    assert rows[0]["conversation_id"] == rows[1]["conversation_id"]


def test_one_503_is_retried_and_the_second_in_a_row_ends_the_chat(either, monkeypatch):
    site = either
    monkeypatch.setenv("CHATGPTFREE_SITE", site.chat_url)
    before_turn(
        monkeypatch,
        {
            2: lambda: site.faults.append(Fault.HTTP_503),
            3: lambda: site.faults.extend([Fault.HTTP_503, Fault.HTTP_503]),
        },
    )

    result = chat("-m", "chatgptfree", input="first\nsecond\nthird\nfourth\nquit\n")

    assert_one_error_line(result, hint=True)
    second = FIRST_TRANSCRIPT + "User: second\nAssistant:"
    third = f"{second} {ANSWER}{second}\nUser: third\nAssistant:"
    assert sent_messages(site) == ["first", second, second, third, third], (
        "turns two and three were each sent twice: the first try and the single retry"
    )
    assert model_saw(site) == ["first", second], "turn three never reached the model"


def test_the_hint_is_only_given_once_earlier_turns_are_saved(either, monkeypatch):
    """A failure on the first turn of a new chat has nothing to continue: no hint. On the
    first turn of ``llm chat -c`` the earlier turns are saved: the hint."""
    site = either
    monkeypatch.setenv("CHATGPTFREE_SITE", site.chat_url)
    site.faults = [Fault.CUT]  # some text, then the connection is reset: no retry

    cut = chat("-m", "chatgptfree", input="first\nsecond\nquit\n")

    assert_one_error_line(cut, hint=False)
    assert re.search(r"> first\n[^\n]+\nError: ", cut.output), cut.output
    assert logged_responses() == [], "nothing was saved"

    site.faults = [Fault.HTTP_503, Fault.HTTP_503]
    down = chat("-m", "chatgptfree", input="first\nsecond\nquit\n")

    line = assert_one_error_line(down, hint=False)
    assert "> first\nError: " in down.output and "503" in line
    assert logged_responses() == []

    assert chat("-m", "chatgptfree", input="first\nquit\n").exit_code == 0
    site.faults = [Fault.HTTP_503, Fault.HTTP_503]
    continued = chat("-c", input="second\nquit\n")

    assert_one_error_line(continued, hint=True)
    assert "> second\nError: " in continued.output


# -- blank lines -----------------------------------------------------------------------


def test_blank_and_whitespace_lines_send_nothing_and_the_chat_goes_on(either, monkeypatch):
    site = either
    monkeypatch.setenv("CHATGPTFREE_SITE", site.chat_url)

    result = chat("-m", "chatgptfree", input="first\n\n \t \nsecond\n   \nthird\nquit\n")

    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "Error" not in result.output
    assert result.output.endswith(f"> third\n{ANSWER}{third_turn()}\n> quit\n")
    assert sent_messages(site) == ["first", second_turn(), third_turn()], (
        "nothing was sent for the blank turns, and no later transcript holds them"
    )
    assert model_saw(site) == sent_messages(site)
    per_turn = 2 if site.generation == "2.x" else 1  # 2.x: cache step and stream step
    assert len(site.ajax_requests()) == 3 * per_turn and site.page_gets == 1, "no other request"

    # the whitespace turns llm logged stay out of the continued conversation too
    resumed = chat("-c", input="fourth\nquit\n")
    assert resumed.exit_code == 0, resumed.output
    fourth = f"{third_turn()} {ANSWER}{third_turn()}\nUser: fourth\nAssistant:"
    assert model_saw(site)[-1] == fourth


def second_turn() -> str:
    return FIRST_TRANSCRIPT + "User: second\nAssistant:"


def third_turn() -> str:
    return f"{second_turn()} {ANSWER}{second_turn()}\nUser: third\nAssistant:"


# -- llm logs --------------------------------------------------------------------------


BOTS_2X = {"chat_url": "bot 4 (Customer Support)", "bot_url": "bot 5 (Second Bot)"}


@pytest.mark.parametrize(
    "release, page, bot",
    [
        ("2.4.71", "chat_url", re.escape(BOTS_2X["chat_url"])),
        ("2.4.71", "bot_url", re.escape(BOTS_2X["bot_url"])),
        ("1.8.96", "chat_url", r"chat box"),
        ("1.8.96", "bot_url", r"bot 4\b"),
    ],
    ids=["2.x-chat-page", "2.x-bot-page", "1.x-chat-page", "1.x-bot-page"],
)  # fmt: skip
def test_logs_name_the_site_and_the_bot_that_answered(release, page, bot, monkeypatch):
    """Plain ``llm logs`` shows llm's resolved model: which site and which bot answered."""
    with AIPowerSite(release) as site:
        monkeypatch.setenv("CHATGPTFREE_SITE", getattr(site, page))
        assert chat("-m", "chatgptfree", input="first\nquit\n").exit_code == 0
        host = f"127.0.0.1:{site.port}"

    result = run("logs", "-n", "1")

    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith("Model: ")]
    found = re.fullmatch(r"Model: \*\*gpt-4o-mini-2024-07-18\*\* \(resolved: \*\*(.+)\*\*\)", line)
    assert found, line
    resolved = found.group(1)
    assert host in resolved, f"the site: {resolved}"
    assert re.search(bot, resolved), f"the bot: {resolved}"
    if release == "2.4.71":
        assert resolved == f"{host} {BOTS_2X[page]}"


# -- a real terminal -------------------------------------------------------------------

ESCAPES = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|[=>])")


class Terminal:
    """A child process on a pseudo-terminal; every read is bounded."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        import pty

        self.master, slave = pty.openpty()
        try:
            self.child = subprocess.Popen(
                args, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
                start_new_session=True, close_fds=True,
            )  # fmt: skip
        finally:
            os.close(slave)
        self.seen = b""
        self.ended = False

    @property
    def text(self) -> str:
        plain = self.seen.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "")
        return ESCAPES.sub("", plain)

    def read(self, until: Callable[[str], bool], seconds: float) -> str:
        """Read until ``until(text)`` or the child's end; fail after ``seconds``."""
        deadline = time.monotonic() + seconds
        while not until(self.text) and not self.ended:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; the terminal shows:\n{self.text}"
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: the child is gone and so is the terminal's other end
                    chunk = b""
                self.seen += chunk
                self.ended = not chunk
        return self.text

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def close(self) -> None:
        if self.child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child.pid, 9)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.child.wait(timeout=5)
        os.close(self.master)


def test_in_a_real_terminal_a_failing_turn_ends_with_one_error_line(user_dir, tmp_path):
    with AIPowerSite("2.4.71") as site:
        env = dict(os.environ)
        env.update(
            LLM_USER_PATH=str(user_dir),
            CHATGPTFREE_SITE=site.chat_url,
            CHATGPTFREE_IMPERSONATE="none",
            TERM="dumb",
            PYTHONUNBUFFERED="1",
        )
        terminal = Terminal(
            [sys.executable, "-m", "llm", "chat", "-m", "chatgptfree"], env, tmp_path
        )
        try:
            terminal.read(lambda text: text.endswith("> "), 30)
            terminal.type("first")
            terminal.read(lambda text: f"{ANSWER}first\n" in text and text.endswith("> "), 30)
            site.fault = Fault.HTTP_503  # from now on, every request: the retry fails too
            terminal.type("second")
            shown = terminal.read(lambda text: False, 30)
            assert terminal.child.wait(timeout=10) == 1
        finally:
            terminal.close()
    assert "Traceback" not in shown, shown
    [line] = error_lines(shown)
    assert line.startswith("Error: ") and "503" in line and line.endswith(HINT), shown
    assert shown.endswith(f"> second\n{line}\n"), shown
    assert len(site.ajax_requests("aipkit_cache_sse_message")) == 3, "turn one, turn two twice"
