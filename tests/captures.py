"""Reading the raw captures of tests/samples (verbatim copies of shared/samples)."""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

SAMPLES = Path(__file__).parent / "samples"
RELEASES = ["1.8.79", "1.8.85", "1.8.91", "1.8.96"]
RELEASES_2X = ["2.3", "2.4.71"]
PROVIDERS = "2.4.71-providers"  # chatgptfree.ai's nine bots on six model APIs
STEPS = (".cache", ".first-stream", ".turn1", ".turn1.cache")  # extra requests of a 2.x scenario
ELIDED = re.compile(r"\((\d+) bytes of multipart/form-data, the field (\w+) as above; elided\)")
ELIDED_VALUE = re.compile(r"<(\d+) characters elided>")


def captures(releases: list[str] = RELEASES) -> list[tuple[str, str]]:
    """(release, scenario) of every capture; a 2.x scenario's extra steps are part of it."""
    return [
        (release, path.name.removesuffix(".response.http"))
        for release in releases
        for path in sorted((SAMPLES / release).glob("*.response.http"))
        if not path.name.removesuffix(".response.http").endswith(STEPS)
    ]


def split_capture(path: Path) -> tuple[int, str]:
    """Status and body of a captured response."""
    head, _, body = path.read_bytes().partition(b"\r\n\r\n")
    if not body and b"\n\n" in head:
        head, _, body = head.partition(b"\n\n")
    return int(head.split()[1]), body.decode("utf-8")


@dataclass
class CapturedResponse:
    status: int
    headers: list[tuple[str, str]]  # in order, as captured
    body: bytes  # chunked encoding already decoded


def read_response(path: Path) -> CapturedResponse:
    head, _, body = path.read_bytes().partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = [tuple(line.split(": ", 1)) for line in lines]
    return CapturedResponse(int(status_line.split()[1]), headers, body)


@dataclass
class CapturedRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


def read_request(path: Path) -> CapturedRequest:
    """A ``.request.txt``: request line, headers, the decoded fields (skipped), raw body."""
    text = path.read_bytes().decode("utf-8")
    head, _, rest = text.partition("\n\n")
    request_line, *header_lines = head.splitlines()
    method, url = request_line.split(" ", 1)
    headers = dict(line.split(": ", 1) for line in header_lines)
    if rest.startswith("# form fields"):
        rest = rest.partition("\n\n")[2]
    body = rest.removesuffix("\n")
    if body == "(query string)":
        body = ""
    if found := ELIDED.fullmatch(body):
        rebuilt = multipart(form_fields(text), headers["Content-Type"])
        assert len(rebuilt) == int(found[1]), "the elided body is not rebuilt to its size"
        return CapturedRequest(method, url, headers, rebuilt)
    return CapturedRequest(method, url, headers, body.encode())


def form_fields(text: str) -> list[tuple[str, str]]:
    """The ``# form fields (decoded)`` of a request file; an elided run of base64 comes back
    as the ``A`` (zero bytes) it was made of."""
    fields = []
    for line in text.splitlines():
        if found := re.fullmatch(r"#   (\w+) = ('.*')", line):
            value = ast.literal_eval(found[2])
            fields.append((found[1], ELIDED_VALUE.sub(lambda m: "A" * int(m[1]), value)))
    return fields


def multipart(fields: list[tuple[str, str]], content_type: str) -> bytes:
    """A ``multipart/form-data`` body as the browser writes it."""
    boundary = content_type.partition("boundary=")[2]
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields
    ]
    return ("".join(parts) + f"--{boundary}--\r\n").encode()


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
