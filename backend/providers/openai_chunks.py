"""The chunks of an OpenAI-compatible chat completion stream: one `data:` line's JSON
(`chunk_of`), and a stream's lines folded into the deltas of each network read
(`StreamTally`), with the usage and finish reason the stream reports along the way.

Apart from openai_sse (the HTTP around it) so that each stays small; the rules are the
ones tests/test_openai_stream_reader.py holds the reader to: an error object mid-stream
is the upstream's failure, a chunk that is not what the API sends is a malformed
response, and the deltas before a malformed chunk are still the stream's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import orjson

from backend.providers import failures
from backend.providers.base import ProviderError, Usage, finish_reason_of

DATA = b"data:"
DONE = b"[DONE]"


@dataclass(slots=True)
class Chunk:
    """The parts of one `chat.completion.chunk` Sluice uses (one per token: not frozen,
    whose `__init__` costs an `object.__setattr__` per field)."""

    text: str
    finished: bool
    usage: Usage | None
    finish_reason: str | None = None


def chunk_of(data: bytes, label: str) -> Chunk | None:
    """The JSON of one `data:` line; None for the closing `[DONE]` or an empty line."""
    data = data.strip()
    if not data or data == DONE:
        return None
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise failures.malformed(label, f"invalid JSON: {exc.msg}") from exc
    if not isinstance(payload, dict):
        raise failures.malformed(label, "a chunk is not a JSON object")
    if error := payload.get("error"):
        detail = error.get("message") if isinstance(error, dict) else str(error)
        raise failures.unavailable(label, f"it reported an error mid-stream: {detail}")
    usage = None
    if reported := payload.get("usage"):
        try:
            usage = Usage(int(reported["prompt_tokens"]), int(reported["completion_tokens"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise failures.malformed(label, "usage without token counts") from exc
    choices = payload.get("choices")
    if not choices:
        return Chunk("", False, usage)
    try:
        choice = choices[0]
        content = (choice.get("delta") or {}).get("content") or ""
        reason = choice.get("finish_reason")
    except (AttributeError, IndexError, KeyError, TypeError) as exc:
        raise failures.malformed(label, "a chunk without a choice") from exc
    if not isinstance(content, str):
        raise failures.malformed(label, "delta content is not text")
    return Chunk(content, reason is not None, usage, reason)


class StreamTally:
    """One stream's chunks as they are read: the delta texts of each read, and what its
    ending needs (every text, the usage, whether and why it finished)."""

    __slots__ = ("finished", "label", "reported", "texts", "usage")

    def __init__(self, label: str) -> None:
        self.label = label
        self.texts: list[str] = []
        self.usage: Usage | None = None
        self.finished = False
        self.reported: str | None = None

    def fold(self, lines: list[bytes]) -> tuple[list[str], ProviderError | None]:
        """The delta texts of a read's complete lines, in order, and the failure of the
        first malformed line (the texts before it are the stream's all the same)."""
        burst: list[str] = []
        for line in lines:
            if not line.startswith(DATA):
                continue
            try:
                chunk = chunk_of(line[5:], self.label)
            except ProviderError as malformed:
                self.texts += burst
                return burst, malformed
            if chunk is None:
                continue
            if chunk.usage is not None:
                self.usage = chunk.usage
            if chunk.finished:
                self.finished = True
                self.reported = chunk.finish_reason or self.reported
            if chunk.text:
                burst.append(chunk.text)
        self.texts += burst
        return burst, None

    def ending(self, counted: Callable[[str], Usage]) -> Usage:
        """The stream's usage with its finish reason; `counted(text)` when the upstream
        reported none. A stream that never finished is a malformed response."""
        if not self.finished:
            raise failures.malformed(self.label, "the stream ended without a finish_reason")
        usage = self.usage or counted("".join(self.texts))
        return replace(usage, finish_reason=finish_reason_of(self.reported))
