"""One prompt's peak traced memory, for bench/run.py: ``memory_probe.py plugin|bare SITE BOX``.

Runs in a process of its own so that the site's allocations are not counted (the plugin's
page cache, in ``$LLM_USER_PATH``, is warm). Two prompts: the first of the process (as
every ``llm`` command makes), then a second. Prints JSON: the peak bytes traced while each
answer was read, and the answer's size in bytes. Both read with httpx2: curl_cffi buffers
in C, where tracemalloc does not see.
"""

from __future__ import annotations

import json
import sys
import tracemalloc
import uuid

import httpx2
import llm
from bare import Box, ask_httpx


def plugin(site: str, box: Box) -> str:
    return llm.get_model("chatgptfree").prompt("Hi", site=site, impersonate="none").text()


def bare(site: str, box: Box) -> str:
    """A minimal client: the requests, then the deltas joined."""
    with httpx2.Client() as client:
        return ask_httpx(client, box, "Hi", str(uuid.uuid4()))


def main() -> None:
    kind, site, box = sys.argv[1], sys.argv[2], Box(**json.loads(sys.argv[3]))
    llm.get_model("chatgptfree")  # load the plugins before tracing
    ask = plugin if kind == "plugin" else bare
    tracemalloc.start()
    peaks = []
    for _prompt in range(2):
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        text = ask(site, box)
        peaks.append(tracemalloc.get_traced_memory()[1] - baseline)
        size = len(text.encode())
        del text
    print(json.dumps({"first": peaks[0], "second": peaks[1], "answer_bytes": size}))


if __name__ == "__main__":
    main()
