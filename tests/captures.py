"""Reading the raw captures of tests/samples (verbatim copies of shared/samples)."""

from __future__ import annotations

import json
from pathlib import Path

SAMPLES = Path(__file__).parent / "samples"
RELEASES = ["1.8.79", "1.8.85", "1.8.91", "1.8.96"]


def captures() -> list[tuple[str, str]]:
    return [
        (release, path.name.removesuffix(".response.http"))
        for release in RELEASES
        for path in sorted((SAMPLES / release).glob("*.response.http"))
    ]


def split_capture(path: Path) -> tuple[int, str]:
    """Status and body of a captured response."""
    head, _, body = path.read_bytes().partition(b"\r\n\r\n")
    if not body and b"\n\n" in head:
        head, _, body = head.partition(b"\n\n")
    return int(head.split()[1]), body.decode("utf-8")


def reference_answer(body: str) -> str:
    """The answer a capture holds, read the simple way: whole lines, whole body."""
    if body.lstrip().startswith("{"):
        return json.loads(body)["data"]
    text = []
    for line in body.splitlines():
        if line == "data: [DONE]":
            break
        if line.startswith("data: "):
            choice = json.loads(line[6:])["choices"][0]
            text.append((choice.get("delta") or {}).get("content") or choice.get("text") or "")
    return "".join(text)
