"""Where the answer goes when its reader stops early: ``| head``, a full disk, a Python
``break``. Each runs the real ``llm`` (or Python) in a child process, as a user would, so
that what happens at interpreter shutdown is seen too: the process ends at once, with no
traceback, and nothing is left waiting on the site."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.aipower_site import AIPowerSite, Fault

BOUND = 30  # seconds: a process still running by then hangs
NOISE = ("Traceback", "Exception ignored", "RuntimeError", "GeneratorExit", "Task was destroyed")


def environment(user_dir: Path, site: AIPowerSite) -> dict[str, str]:
    env = dict(os.environ, LLM_USER_PATH=str(user_dir), CHATGPTFREE_SITE=site.chat_url)
    env.pop("LLM_RAISE_ERRORS", None)
    return env


def run_bounded(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``args`` in a session of their own; past ``BOUND``, kill that session (the shell
    and the pipeline it started, nothing else) and fail."""
    started = time.monotonic()
    child = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        stdout, stderr = child.communicate(timeout=BOUND)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        pytest.fail(f"still running after {BOUND} s: {args}")
    took = time.monotonic() - started
    return subprocess.CompletedProcess(args, child.returncode, stdout, stderr), took


def run_shell(command: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    return run_bounded(["bash", "-c", command], env)


def assert_quiet(stderr: bytes) -> None:
    text = stderr.decode(errors="replace")
    assert not [word for word in NOISE if word in text], text


@pytest.fixture
def long_answer(site: AIPowerSite) -> AIPowerSite:
    site.fault = Fault.BIG  # an answer of several MB, streamed
    return site


def test_an_answer_piped_into_head_ends_the_pipeline_at_once(long_answer, user_dir):
    llm = Path(sys.executable).with_name("llm")
    env = environment(user_dir, long_answer)
    done, took = run_shell(f"'{llm}' -m chatgptfree hi | head -c 100", env)
    assert len(done.stdout) == 100
    assert_quiet(done.stderr)
    # llm's own line for a closed stdout, as for every model: the plugin adds nothing
    assert done.stderr.decode().strip() in ("", "Error: [Errno 32] Broken pipe")
    assert took < BOUND / 2


def test_an_answer_written_to_a_full_disk_is_one_line(long_answer, user_dir):
    llm = Path(sys.executable).with_name("llm")
    done, _ = run_shell(
        f"'{llm}' -m chatgptfree hi > /dev/full", environment(user_dir, long_answer)
    )
    assert done.returncode == 1
    assert_quiet(done.stderr)
    assert done.stderr.decode().strip() == "Error: [Errno 28] No space left on device"


BREAK = """
import asyncio, sys, llm
def sync():
    response = llm.get_model("chatgptfree").prompt("hi")
    for chunk in response:
        print(len(chunk) > 0)
        break
async def async_():
    response = llm.get_async_model("chatgptfree").prompt("hi")
    async for chunk in response:
        print(len(chunk) > 0)
        break
sync() if sys.argv[1] == "sync" else asyncio.run(async_())
print("left the loop")
"""


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_python_caller_that_breaks_out_of_an_answer_exits_cleanly(long_answer, user_dir, kind):
    done, took = run_bounded(
        [sys.executable, "-c", BREAK, kind], environment(user_dir, long_answer)
    )
    assert (done.returncode, done.stdout.decode().split()) == (0, ["True", "left", "the", "loop"])
    assert_quiet(done.stderr)
    assert done.stderr == b""
    assert took < BOUND / 2


def test_an_answer_a_latin_1_terminal_cannot_show_is_one_line(plain_site, user_dir):
    llm = Path(sys.executable).with_name("llm")
    env = environment(user_dir, plain_site) | {"PYTHONIOENCODING": "latin-1"}
    done, took = run_bounded([str(llm), "-m", "chatgptfree", "tick ✓"], env)
    assert done.returncode == 1
    assert_quiet(done.stderr)
    assert done.stderr.decode().startswith("Error: 'latin-1' codec can't encode character")
    assert len(done.stderr.decode().splitlines()) == 1
    assert took < BOUND / 2


def test_many_pipelines_closed_at_once_end_quietly(long_answer, user_dir, tmp_path):
    """Eight at once, so that processes exit while their answers are still being read
    ahead: what the background loop still runs is ended before its generators close."""
    llm = Path(sys.executable).with_name("llm")
    errors = tmp_path / "stderr"
    one = f"'{llm}' -m chatgptfree hi 2>>'{errors}' | head -c 100 > /dev/null"
    done, _ = run_shell(" & ".join([one] * 8) + " & wait", environment(user_dir, long_answer))
    lines = errors.read_text().splitlines()
    assert_quiet(errors.read_bytes())
    assert set(lines) <= {"Error: [Errno 32] Broken pipe"}, lines
    # a pipeline that hangs is killed at BOUND and fails the test in run_shell; eight
    # interpreters starting at once on a loaded machine take too long for a tighter bound
