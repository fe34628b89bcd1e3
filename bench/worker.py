"""The client process of bench/run.py: the plugin and the bare baselines, run on command.

bench/run.py keeps the site (and so the server's connection counts) in its own process and
drives this one: one JSON command per line on standard input, one JSON answer per line on
the output it was started with. Each answer holds wall times and this process's CPU time
(``time.process_time``: every thread of the client, none of the site's). The plugin's
connection pools, a persistent event loop for async prompts and the bare clients live as
long as this process, as they would in a long-running program or an ``llm chat`` session.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import sys
import tempfile
import time
import traceback
import uuid
from typing import Any

import httpx2
import llm
from bare import Box, ask_curl, ask_httpx, ask_httpx_async, ask_httpx_new_connections

import llm_chatgptfree as plugin

CA = os.environ.get("SSL_CERT_FILE")


class Clock:
    """Wall time from the start, the time of the first text, and CPU time of the process."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.cpu = time.process_time()
        self.start = time.perf_counter()

    def text(self, _piece: str = "") -> None:
        if self.first is None:
            self.first = time.perf_counter() - self.start

    def result(self, chars: int, **extra: Any) -> dict:
        return {"ttft": self.first, "wall": time.perf_counter() - self.start,
                "cpu": time.process_time() - self.cpu, "chars": chars, **extra}  # fmt: skip


class Worker:
    def __init__(self) -> None:
        self.model = llm.get_model("chatgptfree")
        self.loop = asyncio.new_event_loop()
        self.session = str(uuid.uuid4())
        self.boxes: dict[str, Box] = {}
        self.clients: dict[str, Any] = {}
        self.folders: list[str] = []
        self.tls = ssl.create_default_context(cafile=CA) if CA else None

    # -- set-up ---------------------------------------------------------------------------

    def box(self, site: str) -> dict:
        """The chat box the plugin would choose, read with a throwaway client."""
        with httpx2.Client(verify=self.tls or True) as client:
            page = client.get(site).text
        boxes = plugin.read_chat_boxes(page, site)
        self.boxes[site] = Box.of(plugin.choose_box(boxes, None, True))
        return {"box": self.boxes[site].json()}

    def user_dir(self) -> dict:
        """A new llm user directory: the plugin's page cache is cold."""
        folder = tempfile.mkdtemp(prefix="chatgptfree-bench-")
        self.folders.append(folder)
        os.environ["LLM_USER_PATH"] = folder
        return {"folder": folder}

    def reset_pools(self) -> dict:
        """Close the plugin's pools (blocking and this loop's), as a new process has none."""
        plugin.reset_blocking_pool()
        self.loop.run_until_complete(plugin.reset_pools())
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()
        self.loop = asyncio.new_event_loop()
        return {}

    # -- the plugin -------------------------------------------------------------------------

    def plugin(
        self, site: str, mode: str, transport: str, read: str = "iterate", usage: bool = False
    ) -> dict:
        """One prompt: its pieces iterated as they come (``iterate``), or ``.text()``; with
        ``usage``, the site is asked for the model and tokens afterwards (``-o usage``)."""
        options = {"site": site, "impersonate": transport}
        if usage:
            options["usage"] = True
        clock = Clock()
        if mode == "async":
            return self.loop.run_until_complete(self.plugin_async(options, clock, read))
        if read == "text":
            return clock.result(len(self.model.prompt("Hi", **options).text()))
        chars = 0
        for piece in self.model.prompt("Hi", **options):
            clock.text()
            chars += len(piece)
        return clock.result(chars)

    async def plugin_async(self, options: dict, clock: Clock, read: str) -> dict:
        response = llm.get_async_model("chatgptfree").prompt("Hi", **options)
        if read == "text":
            return clock.result(len(await response.text()))
        chars = 0
        async for piece in response:
            clock.text()
            chars += len(piece)
        return clock.result(chars)

    def chat(self, site: str, transport: str, turns: int) -> dict:
        """A ``turns``-turn conversation from a cold pool, as an ``llm chat`` session."""
        self.reset_pools()
        clock = Clock()
        conversation = self.model.conversation()
        chars = 0
        for turn in range(turns):
            chars += len(
                conversation.prompt(f"turn {turn}", site=site, impersonate=transport).text()
            )
        return clock.result(chars)

    def concurrent(self, site: str, count: int, transport: str) -> dict:
        """``count`` async prompts at once, from a cold page cache and a new event loop."""
        self.user_dir()

        async def ask() -> list[str]:
            model = llm.get_async_model("chatgptfree")
            prompts = [
                model.prompt(f"q{i}", site=site, impersonate=transport) for i in range(count)
            ]
            return await asyncio.gather(*(prompt.text() for prompt in prompts))

        clock = Clock()
        answers = asyncio.run(ask())
        assert len(answers) == count and all(answers), answers
        return clock.result(sum(map(len, answers)))

    # -- the bare baselines -----------------------------------------------------------------

    def client(self, lib: str) -> Any:
        if lib not in self.clients:
            if lib == "curl":
                from curl_cffi import requests as curl

                self.clients[lib] = curl.Session(
                    impersonate="chrome", verify=CA or True, timeout=60
                )
            else:
                self.clients[lib] = httpx2.Client(verify=self.tls or True, timeout=60)
        return self.clients[lib]

    def new_client(self) -> httpx2.Client:
        return httpx2.Client(verify=self.tls or True, timeout=60)

    def bare(self, site: str, lib: str, kind: str, ttft: bool = True) -> dict:
        """One prompt, bare: a reused client (httpx2 or curl) or a new connection per request."""
        box = self.boxes[site]
        clock = Clock()
        on_text = clock.text if ttft else None
        if kind == "new":
            text = ask_httpx_new_connections(self.new_client, box, "Hi", self.session, on_text)
        elif lib == "curl":
            text = ask_curl(self.client(lib), box, "Hi", self.session, on_text)
        else:
            text = ask_httpx(self.client(lib), box, "Hi", self.session, on_text)
        return clock.result(len(text))

    def bare_chat(self, site: str, lib: str, turns: int) -> dict:
        """The same conversation (the same growing transcript) with a new bare client."""
        box = self.boxes[site]
        if lib in self.clients:
            self.clients.pop(lib).close()  # a new client: a cold pool
        clock = Clock()
        client = self.client(lib)
        ask = ask_curl if lib == "curl" else ask_httpx
        said: list[tuple[str, str]] = []
        chars = 0
        for turn in range(turns):
            said.append(("user", f"turn {turn}"))
            answer = ask(client, box, plugin.transcript(said), self.session)
            said.append(("assistant", answer))
            chars += len(answer)
        result = clock.result(chars)
        self.clients.pop(lib).close()
        return result

    def bare_concurrent(self, site: str, count: int) -> dict:
        """``count`` bare async prompts at once with a new client, after one page GET (the
        chat box is known: the page is read and dropped, as the plugin's cold cache reads it)."""
        box = self.boxes[site]

        async def ask() -> list[str]:
            async with httpx2.AsyncClient(verify=self.tls or True, timeout=60) as client:
                (await client.get(site)).raise_for_status()
                prompts = [
                    ask_httpx_async(client, box, f"q{i}", self.session) for i in range(count)
                ]
                return await asyncio.gather(*prompts)

        clock = Clock()
        answers = asyncio.run(ask())
        assert len(answers) == count and all(answers), answers
        return clock.result(sum(map(len, answers)))

    # -- the end ----------------------------------------------------------------------------

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        self.reset_pools()
        self.loop.close()
        for folder in self.folders:
            shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else printed goes to standard error
    worker = Worker()
    worker.user_dir()
    try:
        for line in sys.stdin:
            command = json.loads(line)
            op = command.pop("op")
            if op == "quit":
                break
            try:
                answer = getattr(worker, op)(**command)
            except Exception as error:  # reported to bench/run.py, which stops
                traceback.print_exc()
                answer = {"error": f"{op}: {type(error).__name__}: {error}"}
            channel.write(json.dumps(answer) + "\n")
    finally:
        worker.close()
        channel.write(json.dumps({"bye": True}) + "\n")


if __name__ == "__main__":
    main()
