"""Benchmarks of llm-chatgptfree against the tests' local AI Power site.

    python bench/run.py            # about two minutes
    python bench/run.py --quick    # fewer repetitions

These machines are shared and noisy, so every figure is a count, or a ratio against a
baseline measured in the same run: A and B interleaved, the median of each kept. Only
127.0.0.1 is ever contacted, every loop is bounded, and the script stops the site and the
processes it started.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402
import llm  # noqa: E402
from bare import join_deltas  # noqa: E402  (bench/ is on sys.path as the script's folder)

from tests.aipower_site import AIPowerSite  # noqa: E402

MODEL = "gpt-4o-mini-2024-07-18"
MEMORY_PROBE = Path(__file__).with_name("memory_probe.py")


def fresh_user_dir() -> str:
    """A new, empty llm user directory for this process: a cold page cache."""
    path = tempfile.mkdtemp(prefix="chatgptfree-bench-")
    os.environ["LLM_USER_PATH"] = path
    return path


def interleaved(a: Callable[[], float], b: Callable[[], float], rounds: int) -> tuple:
    """Medians of ``a`` and ``b`` run in turn, A B A B …"""
    times_a, times_b = [], []
    for _ in range(rounds):
        times_a.append(a())
        times_b.append(b())
    return statistics.median(times_a), statistics.median(times_b)


def bare_form(site: AIPowerSite) -> tuple[dict, dict]:
    """The form and headers the plugin last posted, for a bare client to send again."""
    post = [r for r in site.requests if r.method == "POST"][-1]
    headers = {k: v for k, v in post.headers.items() if k in ("origin", "referer", "user-agent")}
    return dict(post.form), headers


# -- 1. requests per prompt -------------------------------------------------------------


def requests_per_prompt(site: AIPowerSite, prompts: int) -> dict:
    environment = dict(os.environ, LLM_USER_PATH=fresh_user_dir())
    site.reset_counts()
    for number in range(prompts):
        subprocess.run(
            [sys.executable, "-m", "llm", "-m", MODEL, "-o", "site", site.chat_url, f"q{number}"],
            env=environment,
            check=True,
            capture_output=True,
            timeout=60,
        )
    return {"processes": prompts, "page GETs": site.page_gets, "POSTs": site.ajax_posts}


# -- 2. time to first token ---------------------------------------------------------------


def time_to_first_token(site: AIPowerSite, rounds: int) -> dict:
    fresh_user_dir()
    site.first_byte_delay = 0.05
    model = llm.get_model(MODEL)
    async_model = llm.get_async_model(MODEL)
    model.prompt("warm up", site=site.chat_url).text()  # the page is now cached
    form, headers = bare_form(site)
    shared = httpx2.Client()

    def plugin_sync() -> float:
        started = time.perf_counter()
        took = None
        for _ in model.prompt("Hi", site=site.chat_url):  # drained: nothing left open
            took = took or time.perf_counter() - started
        assert took is not None
        return took

    def plugin_async() -> float:
        async def first() -> float:
            started = time.perf_counter()
            response = async_model.prompt("Hi", site=site.chat_url)
            took = None
            async for _ in response:  # drained, so nothing is left open
                took = took or time.perf_counter() - started
            assert took is not None
            return took

        return asyncio.run(first())

    def first_line(client: httpx2.Client, started: float) -> float:
        with client.stream("POST", site.ajax_url, data=form, headers=headers) as response:
            for line in response.iter_lines():
                if line.startswith("data: ") and '"content":"' in line and '""' not in line:
                    return time.perf_counter() - started
        raise AssertionError("no text")

    def bare_new_client() -> float:  # what httpx2.post() does: a client per request
        started = time.perf_counter()
        with httpx2.Client() as client:
            return first_line(client, started)

    def bare_shared_client() -> float:  # the best a bare client can do
        return first_line(shared, time.perf_counter())

    sync, bare = interleaved(plugin_sync, bare_new_client, rounds)
    asynchronous, best = interleaved(plugin_async, bare_shared_client, rounds)
    shared.close()
    site.first_byte_delay = 0.0
    return {
        "plugin sync (ms)": sync * 1000,
        "plugin async (ms)": asynchronous * 1000,
        "bare httpx2, new client (ms)": bare * 1000,
        "bare httpx2, reused client (ms)": best * 1000,
        "sync / bare new": sync / bare,
        "async / bare new": asynchronous / bare,
        "sync / bare reused": sync / best,
        "async / bare reused": asynchronous / best,
    }


# -- 3. streaming throughput --------------------------------------------------------------


def throughput(site: AIPowerSite, rounds: int, deltas: int = 20_000) -> dict:
    fresh_user_dir()
    model = llm.get_model(MODEL)
    model.prompt("warm up", site=site.chat_url).text()
    form, headers = bare_form(site)
    site.answer_deltas = deltas

    def plugin() -> float:
        started = time.perf_counter()
        text = model.prompt("Hi", site=site.chat_url).text()
        assert text.count(" w") == deltas, len(text)
        return time.perf_counter() - started

    def bare() -> float:
        started = time.perf_counter()
        with (
            httpx2.Client() as client,
            client.stream("POST", site.ajax_url, data=form, headers=headers) as response,
        ):
            assert join_deltas(response).count(" w") == deltas
        return time.perf_counter() - started

    plugin_time, bare_time = interleaved(plugin, bare, rounds)
    site.answer_deltas = None
    return {
        "deltas": deltas,
        "plugin (deltas/s)": deltas / plugin_time,
        "bare httpx2 iter_lines + json (deltas/s)": deltas / bare_time,
        "plugin / bare": bare_time / plugin_time,
    }


# -- 4. CLI start-up ----------------------------------------------------------------------


def cli_startup(rounds: int) -> dict:
    """``llm models`` as whole processes, in CPU seconds (steadier than wall time here)."""
    environment = dict(os.environ, LLM_USER_PATH=fresh_user_dir())
    environment.pop("LLM_LOAD_PLUGINS", None)
    variants = {
        "installed": environment,
        "only this plugin": dict(environment, LLM_LOAD_PLUGINS="llm-chatgptfree"),
        "disabled": dict(environment, LLM_LOAD_PLUGINS=""),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds + 1):  # the first round only warms the file cache
        for name, env in variants.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run(
                [sys.executable, "-m", "llm", "models"], env=env, check=True,
                capture_output=True, timeout=60,
            )  # fmt: skip
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            times[name].append(cpu)
    median = {name: statistics.median(values[1:]) for name, values in times.items()}
    fastest = {name: min(values[1:]) for name, values in times.items()}
    # as installed by pip: with byte code written and cached (this machine sets
    # PYTHONDONTWRITEBYTECODE, which would make every import compile the module again)
    cached = dict(variants["disabled"])
    cached.pop("PYTHONDONTWRITEBYTECODE", None)
    for _ in range(2):
        marginal = subprocess.run(
            [sys.executable, "-c", IMPORT_COST], env=cached, check=True,
            capture_output=True, text=True, timeout=60,
        ).stdout.split()  # fmt: skip
    return {
        "llm models, plugin installed (CPU ms, median)": median["installed"] * 1000,
        "llm models, plugins disabled (CPU ms, median)": median["disabled"] * 1000,
        "installed / disabled (medians)": median["installed"] / median["disabled"],
        "installed / disabled (fastest runs)": fastest["installed"] / fastest["disabled"],
        "only this plugin / disabled (medians)": median["only this plugin"] / median["disabled"],
        "import llm_chatgptfree after llm.cli (ms)": float(marginal[0]),
        "that import / import llm.cli": float(marginal[0]) / float(marginal[1]),
    }


IMPORT_COST = """
import time
started = time.perf_counter()
import llm, llm.cli
cli = time.perf_counter() - started
started = time.perf_counter()
import llm_chatgptfree
print((time.perf_counter() - started) * 1000, cli * 1000)
"""


# -- 5. peak memory -----------------------------------------------------------------------


def peak_memory(site: AIPowerSite, sizes: list[int]) -> dict:
    """Peak traced memory of a prompt, in a process of its own (the site is not in it)."""
    figures = {}
    site.fault = "big"
    for size in sizes:
        site.big_answer_bytes = size
        results = {}
        for client in ("plugin", "bare"):
            output = subprocess.run(
                [sys.executable, str(MEMORY_PROBE), client, site.chat_url, site.ajax_url],
                env=dict(os.environ, LLM_USER_PATH=fresh_user_dir()),
                check=True, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            results[client] = json.loads(output.stdout)
        answer = results["plugin"]["answer_bytes"]
        label = f"{size // 1_000_000} MB answer"
        figures[f"{label}: plugin peak / answer bytes"] = results["plugin"]["peak"] / answer
        figures[f"{label}: bare peak / answer bytes"] = results["bare"]["peak"] / answer
        figures[f"{label}: plugin / bare"] = results["plugin"]["peak"] / results["bare"]["peak"]
    site.fault = None
    return figures


# -- 6. concurrency -----------------------------------------------------------------------


def concurrency(site: AIPowerSite, prompts: int, rounds: int) -> dict:
    async def ask(count: int) -> float:
        model = llm.get_async_model(MODEL)
        started = time.perf_counter()
        answers = await asyncio.gather(
            *(model.prompt(f"q{i}", site=site.chat_url).text() for i in range(count))
        )
        assert len(answers) == count and all(answers)
        return time.perf_counter() - started

    def cold(count: int) -> Callable[[], float]:
        def run() -> float:
            fresh_user_dir()
            return asyncio.run(ask(count))

        return run

    one, many = interleaved(cold(1), cold(prompts), rounds)
    site.reset_counts()
    cold(prompts)()
    return {
        "prompts": prompts,
        "one prompt, cold cache (ms)": one * 1000,
        f"{prompts} at once, cold cache (ms)": many * 1000,
        f"{prompts} at once / one": many / one,
        f"page GETs for {prompts} at once": site.page_gets,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    rounds = 5 if parser.parse_args().quick else 15
    print(f"# llm-chatgptfree benchmarks, {datetime.date.today()}")
    print(
        f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"llm {metadata.version('llm')}, httpx2 {metadata.version('httpx2')}\n"
    )
    sections = []
    with AIPowerSite("1.8.96") as site:
        sections.append(("Requests per prompt (10 llm processes)", requests_per_prompt(site, 10)))
        sections.append(
            ("Time to first token (50 ms server delay)", time_to_first_token(site, rounds))
        )
        sections.append(("Streaming throughput", throughput(site, max(3, rounds // 3))))
        sections.append(("CLI start-up", cli_startup(rounds)))
        sections.append(("Peak memory", peak_memory(site, [1_000_000, 10_000_000])))
        sections.append(("Concurrency", concurrency(site, 50, max(3, rounds // 3))))
    print("| figure | value |\n|---|---|")
    for title, figures in sections:
        print(f"| **{title}** | |")
        for name, value in figures.items():
            shown = f"{value:.3g}" if isinstance(value, float) else str(value)
            print(f"| {name} | {shown} |")


if __name__ == "__main__":
    main()
