"""What a model call costs in credits, from the model's per-1k-token prices."""

from __future__ import annotations

import math
from decimal import Decimal

from backend.providers.base import ModelSpec

PER_TOKENS = 1000


def price(spec: ModelSpec, prompt_tokens: int, completion_tokens: int) -> int:
    """Credits for a call, rounded up so a paid call never costs 0.

    Prices go through `Decimal(str(...))` so a configured 0.1 means exactly 0.1: float
    products such as 3 * 0.1 would otherwise round up one credit too many.
    """
    if prompt_tokens < 0 or completion_tokens < 0:
        raise ValueError("token counts cannot be negative")
    cost = (
        Decimal(str(spec.prompt_price)) * prompt_tokens
        + Decimal(str(spec.completion_price)) * completion_tokens
    ) / PER_TOKENS
    return max(0, math.ceil(cost))
