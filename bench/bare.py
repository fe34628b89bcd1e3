"""The baseline of the benchmarks: the least a client of this protocol must do."""

from __future__ import annotations

import json

import httpx2


def join_deltas(response: httpx2.Response) -> str:
    """Read a streamed answer line by line and join its deltas, up to ``[DONE]``."""
    pieces = []
    for line in response.iter_lines():
        if line == "data: [DONE]":
            break
        if line.startswith("data: "):
            delta = json.loads(line[6:])["choices"][0]["delta"]
            pieces.append(delta.get("content") or "")
    return "".join(pieces)
