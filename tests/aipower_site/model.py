"""The stand-in language model behind the site, shared by both generations.

Like the one behind the captures it answers ``Hello from the fake upstream. You said:
<last user message>`` and streams word by word: the first word, then each next word with
its leading space; a word holding any non-ASCII character goes one character per delta
(after a lone ``" "``). The site's knobs replace the answer: ``big_answer_bytes`` (fault
``big``), ``answer_deltas``, ``reply``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

ANSWER = "Hello from the fake upstream. You said: "
BIG_PIECE = 999
UPSTREAM_401 = (
    "Incorrect API key provided: sk-harn*****. You can find your API key at "
    "https://platform.openai.com/account/api-keys."
)
SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"


class Knobs(Protocol):
    big_answer_bytes: int
    answer_deltas: int | None
    reply: Callable[[list[dict]], str] | None


def rate_limited(model: str) -> str:
    return (
        f"Rate limit reached for {model} in organization org-fake on requests per min (RPM): "
        "Limit 3, Used 3, Requested 1."
    )


def big_answer(size: int) -> str:
    word = "lorem ipsum dolor sit amet " * 37  # 999 characters
    return word * max(1, size // len(word))


def answer_text(knobs: Knobs, messages: list[dict], big: bool = False) -> str | None:
    """The answer the knobs ask for, or None for the model's own."""
    if big:
        return big_answer(knobs.big_answer_bytes)
    if knobs.answer_deltas is not None:
        return "".join(f" w{i}" for i in range(knobs.answer_deltas))
    if knobs.reply is not None:
        return knobs.reply(messages)
    return None


def default_answer(messages: list[dict]) -> str:
    return ANSWER + messages[-1]["content"]


def deltas(text: str, big: bool = False) -> list[str]:
    """The pieces the stand-in streams ``text`` in."""
    if big:
        return [text[i : i + BIG_PIECE] for i in range(0, len(text), BIG_PIECE)]
    pieces: list[str] = []
    for index, word in enumerate(text.split(" ")):
        space = " " if index else ""
        if word.isascii():
            if space or word:
                pieces.append(space + word)
        else:
            pieces.extend([space] if space else [])
            pieces.extend(word)
    return pieces
