"""Embedding batches sized by measured speed, so each takes about EMBEDDING_BATCH_SECONDS.

A fixed batch of 16 chunks took anything from 0.2 s (short chunks, a remote model) to
25-40 s (long chunks on the local model): the feed went silent that long, and another
user's small document waited that long for its turn. The worker now measures each
model's seconds per character of text as it embeds (a moving average over batches) and
cuts the next batch to fit the target time, between 1 and EMBEDDING_BATCH_SIZE texts. The
first batch of a model, before anything is measured, is one text.

Costs are counted in characters, each text's counted at most PACE_CHARS_CAP: a longer one
is cut to the model's window anyway (e5 reads 512 tokens, about that many characters'
worth of work at most).
"""

from __future__ import annotations

from collections.abc import Sequence

PACE_CHARS_CAP = 2500
SMOOTHING = 0.3


class BatchPace:
    def __init__(self, target_seconds: float, max_size: int) -> None:
        self.target_seconds = target_seconds
        self.max_size = max(1, max_size)
        self.seconds_per_char: float | None = None

    @staticmethod
    def cost(text: str) -> int:
        return max(1, min(len(text), PACE_CHARS_CAP))

    def batch_end(self, texts: Sequence[str], start: int) -> int:
        """Where the batch starting at `start` should end (exclusive): at least one text."""
        if self.seconds_per_char is None:
            return start + 1
        budget = self.target_seconds / max(self.seconds_per_char, 1e-9)
        end, spent = start, 0
        while end < len(texts) and end - start < self.max_size:
            spent += self.cost(texts[end])
            if end > start and spent > budget:
                break
            end += 1
        return end

    def record(self, texts: Sequence[str], seconds: float) -> None:
        """A batch of `texts` took `seconds`."""
        measured = seconds / sum(self.cost(text) for text in texts)
        if self.seconds_per_char is None:
            self.seconds_per_char = measured
        else:
            self.seconds_per_char += SMOOTHING * (measured - self.seconds_per_char)
