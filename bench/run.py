"""Benchmarks of llm-chatgptfree against the tests' local AI Power site.

    python bench/run.py            # about four minutes
    python bench/run.py --quick    # fewer repetitions, about two minutes

These machines are shared and noisy, so every figure is a count, or a ratio against a
baseline measured in the same run: the variants interleaved (A B A B …, the order rotated
each round), the median of each kept. Times of requests over a network are given in round
trips of an emulated network (``relay.py``: RTT/2 each way, one more RTT to connect).

The site runs in this process, so every TCP connection is counted where it is accepted,
at the server, and printed beside every plugin run and every baseline: a "reused" client
is seen to be reused. The clients run in other processes (``worker.py``, ``llm`` itself,
``memory_probe.py``, ``import_probe.py``), so their CPU time is theirs alone, none of the
site's. The start-up table (7) runs ``llm`` commands that send no prompt, with no site.

Only 127.0.0.1 is contacted, every loop is bounded, and the script stops the site, the
relays and the processes it started, by their handles.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import os
import platform
import resource
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from tests.aipower_site import AIPowerSite  # noqa: E402
from tests.aipower_site.http import SiteServer  # noqa: E402

# A real server's listen backlog (Apache's ListenBacklog: 511), not socketserver's 5: fifty
# prompts connecting at once would overflow that, and the connections it drops be retried.
SiteServer.request_queue_size = 511

RTT = 0.020  # seconds: the emulated network's round trip
V2, V1 = "2.4.71", "1.8.96"
ROUND_TRIPS = {"2.x": 2, "1.x": 1}  # requests a prompt needs once the nonce is known
TURNS = 10
DELTAS = 20_000
TIMEOUT = 180  # seconds any one client command or process may take
CURL = importlib.util.find_spec("curl_cffi") is not None  # the [browser] extra
CURL_SKIPPED = "curl_cffi is not installed (the [browser] extra): every curl_cffi row is skipped"
CHAT_ANSWER = (
    "A short answer, the same every turn, of about twenty words: the chat measures round trips."
)


@dataclass
class Depth:
    """How many repetitions: ``--quick`` or not."""

    startup: int  # runs of each llm command with the plugin and without
    processes: int  # llm processes in a row
    ttft: int  # measured prompts per variant (after WARM)
    chats: int
    cold: int
    throughput: int
    concurrency: int


FULL = Depth(startup=15, processes=6, ttft=15, chats=4, cold=5, throughput=5, concurrency=3)
QUICK = Depth(startup=5, processes=3, ttft=7, chats=2, cold=3, throughput=3, concurrency=2)
WARM = 3  # prompts per variant before measuring: pools, caches and JIT-free code warm


# -- the site, the relay, the client processes ------------------------------------------------


class Site(AIPowerSite):
    """The local site; its pages give ``public_port`` (a relay in front of it) when set."""

    public_port: int | None = None

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.public_port or self.port}"


def clean_environment(**extra: str) -> dict[str, str]:
    """Ours, without what would send a request elsewhere or choose the transport."""
    drop = ("proxy", "chatgptfree_", "llm_load_plugins")
    environment = {k: v for k, v in os.environ.items() if not k.lower().startswith(drop)}
    environment = {k: v for k, v in environment.items() if "proxy" not in k.lower()}
    environment["NO_PROXY"] = environment["no_proxy"] = "127.0.0.1,localhost"
    return environment | extra


def read_line(stream, seconds: float, what: str) -> str:
    """One line from a child's pipe, or an error after ``seconds``."""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(seconds):
            raise TimeoutError(f"{what} said nothing for {seconds:g} s")
    line = stream.readline()
    if not line:
        raise RuntimeError(f"{what} ended")
    return line


def stop_process(process: subprocess.Popen, seconds: float = 10) -> None:
    """Wait for a child told to end; then terminate it, then kill it (by its handle)."""
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


class Relay:
    """``relay.py`` in a process of its own (its timing undisturbed by this one's work)."""

    def __init__(self, target_port: int, rtt: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(BENCH / "relay.py"), str(target_port), str(rtt)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=clean_environment(),
        )  # fmt: skip
        self.port = int(read_line(self.process.stdout, 30, "the relay").split()[1])

    def close(self) -> None:
        self.process.stdin.close()  # the relay's signal to stop
        stop_process(self.process)
        self.process.stdout.close()


class Client:
    """``worker.py``: the plugin and the bare clients, one command at a time."""

    def __init__(self, **environment: str) -> None:
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed by close())
        self.process = subprocess.Popen(
            [sys.executable, str(BENCH / "worker.py")], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
            env=clean_environment(**environment),
        )  # fmt: skip

    def __call__(self, op: str, **arguments: object) -> dict:
        self.process.stdin.write(json.dumps({"op": op, **arguments}) + "\n")
        self.process.stdin.flush()
        try:
            answer = json.loads(read_line(self.process.stdout, TIMEOUT, f"worker {op}"))
        except (TimeoutError, RuntimeError):
            print(self.errors(), file=sys.stderr)
            raise
        if "error" in answer:
            print(self.errors(), file=sys.stderr)
            raise RuntimeError(answer["error"])
        return answer

    def errors(self) -> str:
        self.log.seek(0)
        return self.log.read()[-4000:]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.process.stdin.write('{"op": "quit"}\n')
            self.process.stdin.close()
        stop_process(self.process)
        self.process.stdout.close()
        self.log.close()


@contextlib.contextmanager
def running(release: str, tls: bool = False, rtt: float | None = None) -> Iterator[Site]:
    """A site (behind a relay when ``rtt``) and nothing left running afterwards."""
    site = Site(release, tls=tls)
    with site:
        relay = Relay(site.port, rtt) if rtt is not None else None
        try:
            site.public_port = relay.port if relay else None
            yield site
        finally:
            if relay is not None:
                relay.close()


@contextlib.contextmanager
def client(site: Site) -> Iterator[Client]:
    environment = {"SSL_CERT_FILE": site.ca_path} if site.tls else {}
    worker = Client(**environment)
    try:
        yield worker
    finally:
        worker.close()


# -- measuring --------------------------------------------------------------------------------


@dataclass
class Runs:
    """What one variant measured: results of the measured runs, connections counted."""

    results: list[dict] = field(default_factory=list)
    connections: int = 0  # accepted by the site during the measured runs
    warm_connections: int = 0

    def median(self, key: str) -> float:
        return statistics.median(result[key] for result in self.results)

    def per_run(self) -> str:
        runs = len(self.results)
        return f"{self.connections} new for {runs} runs ({self.connections / runs:.2g} per run)"


def interleaved(
    site: Site, worker: Client, variants: dict[str, dict], rounds: int, warm: int = WARM
) -> dict[str, Runs]:
    """Each variant ``warm`` times, then ``rounds`` rounds of all of them, the order rotated
    every round; the site's new connections, page GETs and admin-ajax requests counted for
    each run (kept in its result)."""
    runs = {name: Runs() for name in variants}
    names = list(variants)
    for number in range(warm + rounds):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            before = (site.connections, site.page_gets, site.ajax_posts)
            result = worker(**variants[name])
            result["connections"] = site.connections - before[0]
            result["page_gets"] = site.page_gets - before[1]
            result["ajax"] = site.ajax_posts - before[2]
            if number < warm:
                runs[name].warm_connections += result["connections"]
            else:
                runs[name].results.append(result)
                runs[name].connections += result["connections"]
    return runs


class Table:
    """One section of the printed table."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.rows: list[tuple[str, str, str]] = []

    def add(self, figure: str, value: object, connections: str = "") -> None:
        shown = f"{value:.3g}" if isinstance(value, float) else str(value)
        self.rows.append((figure, shown, connections))
        print(f"  {figure}: {shown}  {connections}", file=sys.stderr, flush=True)


def print_tables(tables: list[Table]) -> None:
    print("| figure | value | connections at the server |\n|---|---|---|")
    for table in tables:
        print(f"| **{table.title}** | | |")
        for row in table.rows:
            print("| " + " | ".join(row) + " |")


def with_curl(variants: dict[str, dict]) -> dict[str, dict]:
    """The variants, less those of curl_cffi when it is not installed."""
    return {name: v for name, v in variants.items() if CURL or "curl_cffi" not in name}


def seconds_in_rtt(value: float) -> float:
    return value / RTT


# -- 1. requests per prompt ------------------------------------------------------------------


def llm_command(site_url: str, transport: str, prompt: str) -> list[str]:
    return [sys.executable, "-m", "llm", "-m", "chatgptfree", "--no-log", "-o", "site", site_url,
            "-o", "impersonate", transport, prompt]  # fmt: skip


def requests_per_prompt(table: Table, site: Site, transport: str, processes: int) -> None:
    folder = tempfile.mkdtemp(prefix="chatgptfree-bench-")
    try:
        environment = clean_environment(LLM_USER_PATH=folder)
        site.reset_counts()
        for number in range(processes):
            subprocess.run(llm_command(site.chat_url, transport, f"q{number}"), env=environment,
                           check=True, capture_output=True, timeout=TIMEOUT)  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    actions: dict[str, int] = {}
    for request in site.ajax_requests():
        action = request.fields.get("action", "?")
        actions[action] = actions.get(action, 0) + 1
    name = "httpx2" if transport == "none" else f"curl_cffi {transport}"
    kinds = ", ".join(f"{count} {action}" for action, count in actions.items())
    table.add(
        f"{site.generation} {name}, {processes} processes: page GETs / admin-ajax requests",
        f"{site.page_gets} / {site.ajax_posts} ({kinds})",
        f"{site.connections} for {processes} processes",
    )


# -- 2. time to first token -------------------------------------------------------------------


def time_to_first_token(table: Table, site: Site, worker: Client, rounds: int) -> None:
    url, trips = site.chat_url, ROUND_TRIPS[site.generation]
    worker("box", site=url)
    variants = {
        "plugin sync, httpx2": {"op": "plugin", "site": url, "mode": "sync", "transport": "none"},
        "plugin async, httpx2": {"op": "plugin", "site": url, "mode": "async", "transport": "none"},
        "plugin sync, curl_cffi chrome": {"op": "plugin", "site": url, "mode": "sync",
                                          "transport": "chrome"},
        "plugin async, curl_cffi chrome": {"op": "plugin", "site": url, "mode": "async",
                                           "transport": "chrome"},
        "bare httpx2, reused client": {"op": "bare", "site": url, "lib": "httpx", "kind": "reused"},
        "bare httpx2, new connection per request": {"op": "bare", "site": url, "lib": "httpx",
                                                    "kind": "new"},
        "bare curl_cffi chrome, reused session": {"op": "bare", "site": url, "lib": "curl",
                                                  "kind": "reused"},
    }  # fmt: skip
    variants = with_curl(variants)
    runs = interleaved(site, worker, variants, rounds)
    ttft = {name: seconds_in_rtt(run.median("ttft")) for name, run in runs.items()}
    for name, run in runs.items():
        table.add(f"{site.generation} {name}: TTFT (RTTs)", ttft[name], run.per_run())
    table.add(f"{site.generation} physical limit, {trips} request(s) on a kept connection (RTTs)",
              float(trips))  # fmt: skip
    for name in [name for name in variants if name.startswith("plugin")]:
        curl = "curl" in name
        bare = "bare curl_cffi chrome, reused session" if curl else "bare httpx2, reused client"
        baseline = "bare curl_cffi reused" if curl else "bare httpx2 reused"
        table.add(f"{site.generation} {name} / {baseline}", ttft[name] / ttft[bare])
        table.add(f"{site.generation} {name} / physical limit", ttft[name] / trips)


def usage_cost(table: Table, site: Site, worker: Client, rounds: int) -> None:
    """What ``-o usage`` costs: the whole prompt, with and without the history request."""
    url = site.chat_url
    variants = {
        "without -o usage": {"op": "plugin", "site": url, "mode": "sync", "transport": "none"},
        "with -o usage": {"op": "plugin", "site": url, "mode": "sync", "transport": "none",
                          "usage": True},
    }  # fmt: skip
    runs = interleaved(site, worker, variants, rounds)
    wall = {name: seconds_in_rtt(run.median("wall")) for name, run in runs.items()}
    for name, run in runs.items():
        table.add(f"2.x prompt to its end, {name} (RTTs)", wall[name], run.per_run())
    table.add("2.x -o usage: extra time (RTTs)", wall["with -o usage"] - wall["without -o usage"])


# -- 3. ten turns -----------------------------------------------------------------------------


def ten_turns(table: Table, site: Site, worker: Client, rounds: int) -> None:
    url, trips = site.chat_url, ROUND_TRIPS[site.generation]
    variants = {
        "plugin, httpx2": {"op": "chat", "site": url, "transport": "none", "turns": TURNS},
        "bare httpx2, reused client": {"op": "bare_chat", "site": url, "lib": "httpx",
                                       "turns": TURNS},
        "plugin, curl_cffi chrome": {"op": "chat", "site": url, "transport": "chrome",
                                     "turns": TURNS},
        "bare curl_cffi chrome, reused session": {"op": "bare_chat", "site": url, "lib": "curl",
                                                  "turns": TURNS},
    }  # fmt: skip
    variants = with_curl(variants)
    site.reply = lambda messages: CHAT_ANSWER  # not an echo: the transcript would double
    try:
        runs = interleaved(site, worker, variants, rounds, warm=1)
    finally:
        site.reply = None
    total = {name: seconds_in_rtt(run.median("wall")) for name, run in runs.items()}
    limit = 2 + trips * TURNS  # connect and TLS handshake, then the requests
    for name, run in runs.items():
        table.add(f"{site.generation} {name}: {TURNS} turns (RTTs)", total[name], run.per_run())
    table.add(f"{site.generation} physical limit: connect + TLS + {trips * TURNS} requests (RTTs)",
              float(limit))  # fmt: skip
    table.add(f"{site.generation} plugin httpx2 / bare httpx2",
              total["plugin, httpx2"] / total["bare httpx2, reused client"])  # fmt: skip
    if CURL:
        curl = total["plugin, curl_cffi chrome"] / total["bare curl_cffi chrome, reused session"]
        table.add(f"{site.generation} plugin curl_cffi / bare curl_cffi", curl)
    table.add(f"{site.generation} plugin httpx2 / physical limit", total["plugin, httpx2"] / limit)


# -- 4. the first prompt of a process ---------------------------------------------------------

COUNT_CA_LOADS = """
import atexit, runpy, ssl, sys
loads = []
for name in ("load_verify_locations", "set_default_verify_paths"):
    def counting(self, *args, _original=getattr(ssl.SSLContext, name), **kwargs):
        loads.append(1)
        return _original(self, *args, **kwargs)
    setattr(ssl.SSLContext, name, counting)
atexit.register(lambda: print(f"CA-LOADS {len(loads)}", file=sys.stderr))
sys.argv = sys.argv[1:]
if sys.argv[0] == "-m":
    sys.argv = sys.argv[1:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
else:
    runpy.run_path(sys.argv[0], run_name="__main__")
"""


def timed_process(
    command: list[str], environment: dict[str, str], cwd: str | None = None
) -> tuple[float, float]:
    """Wall and CPU seconds of a child process (its CPU only: the site is in this one)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, env=environment, cwd=cwd, check=True, capture_output=True,
                   timeout=TIMEOUT)  # fmt: skip
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def ca_loads(command: list[str], environment: dict[str, str]) -> int:
    done = subprocess.run([sys.executable, "-c", COUNT_CA_LOADS, *command[1:]], env=environment,
                          check=True, capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip
    return int(done.stderr.rsplit("CA-LOADS ", 1)[1].split()[0])


BARE_LLM = "llm prompt, bare httpx2 model, plugins off"


def cold_prompt(table: Table, site: Site, box: str, rounds: int) -> None:
    folder = tempfile.mkdtemp(prefix="chatgptfree-bench-")
    # as installed by pip: byte code written once and reused
    environment = clean_environment(LLM_USER_PATH=folder)
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    commands = {
        "llm prompt, httpx2": (llm_command(site.chat_url, "none", "hi"), environment),
        "llm prompt, curl_cffi chrome": (llm_command(site.chat_url, "chrome", "hi"), environment),
        BARE_LLM: (
            [sys.executable, str(BENCH / "bare.py"), "llm", "-m", "bare-httpx2", "--no-log", "hi"],
            environment | {"LLM_LOAD_PLUGINS": "", "BENCH_BOX": box},
        ),
    }
    commands = with_curl(commands)
    try:
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        connections = dict.fromkeys(commands, 0)
        for number in range(rounds + 1):  # the first round writes byte code and the page cache
            shift = number % len(commands)
            names = list(commands)
            for name in names[shift:] + names[:shift]:
                before = site.connections
                measured = timed_process(*commands[name])
                if number:
                    times[name].append(measured)
                    connections[name] += site.connections - before
        loads = {name: ca_loads(*command) for name, command in commands.items()}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    wall = {name: statistics.median(t[0] for t in runs) for name, runs in times.items()}
    cpu = {name: statistics.median(t[1] for t in runs) for name, runs in times.items()}
    bare = BARE_LLM
    for name in commands:
        table.add(f"{name}: CA bundles loaded (http:// site)", loads[name],
                  f"{connections[name]} new for {rounds} processes")  # fmt: skip
    for name in [name for name in commands if name != bare]:
        table.add(f"{name} / bare: wall time", wall[name] / wall[bare])
        table.add(f"{name} / bare: CPU time", cpu[name] / cpu[bare])
    table.add("bare process: CPU / wall", cpu[bare] / wall[bare])


# -- 5. throughput ----------------------------------------------------------------------------


def throughput(table: Table, site: Site, worker: Client, rounds: int, libs: tuple) -> None:
    """Client CPU time of a long answer, every delta its own HTTP chunk: the plugin through
    llm (``.text()``, blocking and async) against a bare loop over the same transport."""
    url = site.chat_url
    worker("box", site=url)
    expected = len("".join(f" w{i}" for i in range(DELTAS)))
    names = {"httpx": ("none", "httpx2"), "curl": ("chrome", "curl_cffi chrome")}
    runs: dict[str, Runs] = {}
    libs = tuple(lib for lib in libs if CURL or lib != "curl")
    site.chunk_size, site.answer_deltas = None, DELTAS
    try:
        for lib in libs:  # one transport at a time: no connection idles past keep-alive (5 s)
            transport, name = names[lib]
            variants = {
                f"plugin {mode}, {name}": {"op": "plugin", "site": url, "mode": mode,
                                           "transport": transport, "read": "text"}
                for mode in ("sync", "async")
            }  # fmt: skip
            variants[f"bare {name}"] = {
                "op": "bare", "site": url, "lib": lib, "kind": "reused", "ttft": False
            }  # fmt: skip
            runs |= interleaved(site, worker, variants, rounds, warm=1)
    finally:
        site.chunk_size, site.answer_deltas = None, None
    cpu = {name: run.median("cpu") for name, run in runs.items()}
    for name, run in runs.items():
        assert all(result["chars"] == expected for result in run.results), name
        goal = " (goal ≤ 1.1)" if name.startswith("plugin") else ""
        figure = f"{site.generation} {name}: CPU / bare httpx2 loop{goal}"
        table.add(figure, cpu[name] / cpu["bare httpx2"], run.per_run())
    if "curl" in libs:
        for mode in ("sync", "async"):
            plugin = f"plugin {mode}, curl_cffi chrome"
            ratio = cpu[plugin] / cpu["bare curl_cffi chrome"]
            table.add(f"{site.generation} {plugin}: CPU / bare curl_cffi loop", ratio)


# -- 6. memory and concurrency ----------------------------------------------------------------


def peak_memory(table: Table, site: Site, box: str, folder: str) -> None:
    """Peak traced memory of two prompts, in a process of its own (warm page cache)."""
    environment = clean_environment(LLM_USER_PATH=folder)
    site.fault = "big"
    try:
        for size in (1_000_000, 10_000_000):
            site.big_answer_bytes = size
            peaks, connections = {}, {}
            for kind in ("plugin", "bare"):
                before = site.connections
                done = subprocess.run(
                    [sys.executable, str(BENCH / "memory_probe.py"), kind, site.chat_url, box],
                    env=environment, check=True, capture_output=True, text=True, timeout=TIMEOUT,
                )  # fmt: skip
                peaks[kind] = json.loads(done.stdout)
                connections[kind] = site.connections - before
            answer = peaks["plugin"]["answer_bytes"]
            assert answer == peaks["bare"]["answer_bytes"]
            label = f"{site.generation} {size // 1_000_000} MB answer"
            for prompt in ("first", "second"):
                for kind in ("plugin", "bare"):
                    counted = f"{connections[kind]} for 2 prompts" if prompt == "first" else ""
                    figure = f"{label}, {prompt} prompt of a process: {kind} peak / answer bytes"
                    table.add(figure, peaks[kind][prompt] / answer, counted)
                ratio = peaks["plugin"][prompt] / peaks["bare"][prompt]
                table.add(f"{label}, {prompt} prompt: plugin / bare", ratio)
    finally:
        site.fault = None


def concurrency(table: Table, site: Site, worker: Client, count: int, rounds: int) -> None:
    """``count`` async prompts at once with a cold cache, against one; and against ``count``
    bare async prompts (one page GET, then the prompts, on a new client)."""
    url = site.chat_url
    variants = {
        "plugin, 1 prompt": {"op": "concurrent", "site": url, "count": 1, "transport": "none"},
        f"plugin, {count} at once": {"op": "concurrent", "site": url, "count": count,
                                     "transport": "none"},
        f"bare httpx2, {count} at once": {"op": "bare_concurrent", "site": url, "count": count},
    }  # fmt: skip
    runs = interleaved(site, worker, variants, rounds, warm=1)
    for name, run in runs.items():
        gets = "-".join(str(n) for n in sorted({r["page_gets"] for r in run.results}))
        ajax = "-".join(str(n) for n in sorted({r["ajax"] for r in run.results}))
        table.add(f"{site.generation} {name}, cold cache: page GETs / admin-ajax requests",
                  f"{gets} / {ajax}", run.per_run())  # fmt: skip
    wall = {name: run.median("wall") for name, run in runs.items()}
    many, bare = f"plugin, {count} at once", f"bare httpx2, {count} at once"
    table.add(f"{site.generation} plugin: {count} at once / 1 prompt, wall",
              wall[many] / wall["plugin, 1 prompt"])  # fmt: skip
    table.add(f"{site.generation} {count} at once: plugin / bare httpx2, wall",
              wall[many] / wall[bare])  # fmt: skip


# -- 7. start-up ------------------------------------------------------------------------------

STARTUP_COMMANDS = (["--version"], ["models"], ["logs", "-n", "1"])
IMPORT_TIME = {  # what python -X importtime reports for the plugin's line
    "import llm_chatgptfree": "import llm_chatgptfree",
    "after llm.cli": "import llm.cli; import llm_chatgptfree",
}


def llm_script() -> list[str]:
    """The ``llm`` console script beside this Python, as a user runs it; else ``-m llm``."""
    script = Path(sys.executable).with_name("llm")
    return [str(script)] if script.exists() else [sys.executable, "-m", "llm"]


def plugin_import_time(code: str, environment: dict[str, str], folder: str) -> tuple[float, float]:
    """The plugin's line of ``-X importtime``: its own and its cumulative seconds."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=environment,
                          cwd=folder, check=True, capture_output=True, text=True,
                          timeout=TIMEOUT)  # fmt: skip
    for line in reversed(done.stderr.splitlines()):
        fields = [part.strip() for part in line.removeprefix("import time:").split("|")]
        if len(fields) == 3 and fields[2] == "llm_chatgptfree":
            return int(fields[0]) / 1e6, int(fields[1]) / 1e6
    raise RuntimeError(f"no import time of llm_chatgptfree in: {done.stderr[-500:]}")


def probe(mode: str, environment: dict[str, str], folder: str) -> dict:
    done = subprocess.run([sys.executable, str(BENCH / "import_probe.py"), mode], env=environment,
                          cwd=folder, check=True, capture_output=True, text=True,
                          timeout=TIMEOUT)  # fmt: skip
    return json.loads(done.stdout)


def startup(table: Table, rounds: int) -> None:
    """``llm`` commands that send no prompt, with the plugin (plugins loaded as by default)
    and without (``LLM_LOAD_PLUGINS=""``: llm then loads no plugin, nor scans the installed
    distributions for them; its default plugins are loaded either way), in a fresh user
    directory (``llm logs`` given an empty log database); and the plugin's own import."""
    folder = tempfile.mkdtemp(prefix="chatgptfree-bench-")
    # as installed by pip: byte code written once (the first round) and reused
    environment = clean_environment(LLM_USER_PATH=folder)
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    off = environment | {"LLM_LOAD_PLUGINS": ""}
    variants = {"with the plugin": environment, "plugins off": off}
    times = {(" ".join(c), v): [] for c in STARTUP_COMMANDS for v in variants}
    imports: dict[str, list[tuple[float, float]]] = {name: [] for name in IMPORT_TIME}
    scans: list[float] = []
    try:
        subprocess.run([sys.executable, "-c", "import sqlite_utils, sys; from llm.migrations "
                        "import migrate; migrate(sqlite_utils.Database(sys.argv[1]))",
                        os.path.join(folder, "logs.db")], env=off, check=True,
                       timeout=TIMEOUT)  # fmt: skip
        for number in range(rounds + 1):  # the first round writes byte code
            for command in STARTUP_COMMANDS:
                names = list(variants)
                shift = number % len(names)
                for variant in names[shift:] + names[:shift]:
                    run = [*llm_script(), *command]
                    measured = timed_process(run, variants[variant], cwd=folder)
                    if number:
                        times[" ".join(command), variant].append(measured)
            for name, code in IMPORT_TIME.items():
                measured = plugin_import_time(code, off, folder)
                if number:
                    imports[name].append(measured)
            scanned = probe("scan", off, folder)
            if number:
                scans.append(scanned["seconds"])
        modules = probe("modules", off, folder)
        profiles = [probe("profile", off, folder)["groups"] for _ in range(min(rounds, 5))]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for command in STARTUP_COMMANDS:
        name = " ".join(command)
        wall = {v: statistics.median(t[0] for t in times[name, v]) for v in variants}
        cpu = {v: statistics.median(t[1] for t in times[name, v]) for v in variants}
        runs = f"{len(times[name, 'plugins off'])} runs each"
        table.add(
            f"`llm {name}`: with the plugin / plugins off, wall (goal ≤ 1.05)",
            f"{wall['with the plugin'] / wall['plugins off']:.3g} "
            f"({wall['with the plugin'] * 1000:.0f} / {wall['plugins off'] * 1000:.0f} ms)",
            runs,
        )
        table.add(
            f"`llm {name}`: with the plugin / plugins off, CPU",
            f"{cpu['with the plugin'] / cpu['plugins off']:.3g} "
            f"({cpu['with the plugin'] * 1000:.0f} / {cpu['plugins off'] * 1000:.0f} ms)",
        )
    own = statistics.median(t[0] for t in imports["after llm.cli"]) * 1000
    added = statistics.median(t[1] for t in imports["after llm.cli"]) * 1000
    whole = statistics.median(t[1] for t in imports["import llm_chatgptfree"]) * 1000
    table.add("`python -X importtime -c 'import llm_chatgptfree'`, byte code cached: ms",
              f"{whole:.0f} (llm and its imports included)")  # fmt: skip
    table.add("… the plugin's import after `import llm.cli` (what it adds to a command): ms",
              f"{added:.1f} ({own:.1f} of it the module's own code)")  # fmt: skip
    shares: dict[str, list[float]] = {name: [] for groups in profiles for name in groups}
    for groups in profiles:
        total = sum(groups.values())
        for name in shares:
            shares[name].append(groups.get(name, 0.0) / total)
    top = sorted(((statistics.median(v), name) for name, v in shares.items()), reverse=True)
    table.add("… where that import's time goes (cProfile shares)",
              ", ".join(f"{name} {share:.0%}" for share, name in top))  # fmt: skip
    third = ", ".join(modules["third_party"])
    table.add(f"third-party modules a fresh `import llm_chatgptfree` imports "
              f"({len(modules['third_party'])})", third)  # fmt: skip
    table.add("… modules it adds to those of `llm`'s command line",
              ", ".join(modules["added_to_llm_cli"]) or "none")  # fmt: skip
    table.add("… its dependencies left unimported until needed",
              ", ".join(modules["deferred"]) or "none")  # fmt: skip
    table.add(f"llm's entry-point scan ({scanned['distributions']} distributions), skipped "
              "when plugins are off: ms", statistics.median(scans) * 1000)  # fmt: skip


# -- the run ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    depth = QUICK if parser.parse_args().quick else FULL
    started = time.monotonic()
    print(f"# llm-chatgptfree benchmarks, {datetime.date.today()}")
    print(
        f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"llm {metadata.version('llm')}, httpx2 {metadata.version('httpx2')}, "
        f"curl_cffi {metadata.version('curl_cffi') if CURL else 'not installed'}; "
        f"emulated RTT {RTT * 1000:g} ms\n"
    )
    if not CURL:
        print(f"{CURL_SKIPPED}.\n")
    network = f"https, RTT {RTT * 1000:g} ms"
    requests = Table(f"1. Requests per prompt: {depth.processes} llm processes in a row (http)")
    first_token = Table(f"2. Time to first token: warm nonce, kept connection ({network})")
    chat = Table(f"3. A {TURNS}-turn chat from a cold pool, warm nonce ({network})")
    cold = Table("4. The first prompt of a process (http site, warm page cache)")
    speed = Table(f"5. Throughput: {DELTAS} deltas, each its own HTTP chunk (http)")
    memory = Table("6. Peak memory (httpx2) and concurrency (http)")
    starting = Table("7. Start-up: `llm` commands that send no prompt, and the plugin's import")

    startup(starting, depth.startup)

    with running(V2) as site:
        for transport in ("none", "chrome") if CURL else ("none",):
            requests_per_prompt(requests, site, transport, depth.processes)
    with running(V1) as site:
        requests_per_prompt(requests, site, "none", depth.processes)
    for release in (V2, V1):
        with running(release, tls=True, rtt=RTT) as site, client(site) as worker:
            time_to_first_token(first_token, site, worker, depth.ttft)
            if release == V2:
                usage_cost(first_token, site, worker, depth.ttft)
            ten_turns(chat, site, worker, depth.chats)
    with running(V2) as site, client(site) as worker:
        box = worker("box", site=site.chat_url)["box"]
        cold_prompt(cold, site, box, depth.cold)
        throughput(speed, site, worker, depth.throughput, ("httpx", "curl"))
        folder = worker("user_dir")["folder"]
        worker("plugin", site=site.chat_url, mode="sync", transport="none")  # warm page cache
        peak_memory(memory, site, box, folder)
        concurrency(memory, site, worker, 50, depth.concurrency)
    with running(V1) as site, client(site) as worker:
        throughput(speed, site, worker, depth.throughput, ("httpx",))

    print_tables([requests, first_token, chat, cold, speed, memory, starting])
    print(f"\nRun time: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
