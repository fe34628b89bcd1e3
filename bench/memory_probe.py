"""One prompt's peak traced memory, for bench/run.py: ``memory_probe.py plugin|bare CHAT AJAX``.

Runs in a process of its own so that the site's allocations are not counted. Prints JSON:
the peak bytes traced while the answer was read, and the answer's size in bytes.
"""

from __future__ import annotations

import json
import sys
import tracemalloc

import httpx2
import llm
from bare import join_deltas

import llm_chatgptfree as plugin_module


def plugin(chat_url: str, ajax_url: str) -> str:
    return llm.get_model("chatgptfree").prompt("Hi", site=chat_url).text()


def bare(chat_url: str, ajax_url: str) -> str:
    """A minimal client: scrape the nonce, post, join the deltas."""
    with httpx2.Client() as client:
        box = plugin_module.parse_chat_page(client.get(chat_url).text, chat_url)
        form = plugin_module.build_form(box, "Hi", "BenchBare1")
        with client.stream("POST", ajax_url, data=form) as response:
            return join_deltas(response)


def main() -> None:
    kind, chat_url, ajax_url = sys.argv[1:4]
    llm.get_model("chatgptfree")  # load the plugins before tracing
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    text = (plugin if kind == "plugin" else bare)(chat_url, ajax_url)
    peak = tracemalloc.get_traced_memory()[1] - baseline
    print(json.dumps({"peak": peak, "answer_bytes": len(text.encode())}))


if __name__ == "__main__":
    main()
