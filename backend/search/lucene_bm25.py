"""BM25 exactly as Lucene 9 computes it (Elasticsearch 8's default similarity), in NumPy.

The embedded store scores its keyword leg with this, so it ranks exactly as the
Elasticsearch store does on the same chunks (the shared contract: "keyword leg
identical ranking"), where FTS5's own `bm25()` differed in three ways that reorder
multi-term results:

- IDF `log(1 + (N - n + 0.5) / (n + 0.5))` (FTS5: without the 1, floored near zero);
- the `(k1 + 1)` factor as a float32 boost of the weight (Elasticsearch's BM25 is
  Lucene's `LegacyBM25Similarity`, which keeps the factor Lucene 8 dropped that way);
- the chunk length Lucene stores in one byte (`SmallFloat.intToByte4`: exact below 24
  terms, four significant bits above) and decodes through `byte4ToInt`.

The arithmetic is float32 in the order Lucene's `BM25Scorer` uses (its norm cache
`1 / (k1 * ((1 - b) + b * length / avgdl))`, then `weight - weight / (1 + freq *
normInverse)`), and a chunk's term scores are summed in double and rounded to float, as
Lucene's disjunction scorers do; so equal scores tie on both stores and break by
insertion order on both.
"""

from __future__ import annotations

import math

import numpy as np

K1 = np.float32(1.2)
B = np.float32(0.75)
ONE = np.float32(1.0)
BOOST = ONE + K1
NUM_FREE_VALUES = 24  # 255 - longToInt4(Integer.MAX_VALUE)


def long_to_int4(value: np.ndarray) -> np.ndarray:
    """Lucene's `SmallFloat.longToInt4`, elementwise on non-negative int64."""
    bits = np.zeros_like(value)
    positive = value > 0
    bits[positive] = np.floor(np.log2(value[positive])).astype(np.int64) + 1
    shift = np.maximum(bits - 4, 0)
    encoded = ((value >> shift) & 0x07) | ((shift + 1) << 3)
    return np.where(bits < 4, value, encoded)


def int4_to_long(value: np.ndarray) -> np.ndarray:
    shift = (value >> 3) - 1
    return np.where(shift == -1, value & 0x07, ((value & 0x07) | 0x08) << np.maximum(shift, 0))


def encoded_lengths(lengths: np.ndarray) -> np.ndarray:
    """`SmallFloat.intToByte4` of each field length: the norm byte Lucene stores."""
    values = lengths.astype(np.int64)
    free = values < NUM_FREE_VALUES
    shifted = NUM_FREE_VALUES + long_to_int4(np.where(free, 0, values - NUM_FREE_VALUES))
    return np.where(free, values, shifted).astype(np.uint8)


def decoded_lengths(norms: np.ndarray) -> np.ndarray:
    """`SmallFloat.byte4ToInt`: the length Lucene scores a norm byte as."""
    values = norms.astype(np.int64)
    free = values < NUM_FREE_VALUES
    decoded = NUM_FREE_VALUES + int4_to_long(np.where(free, 0, values - NUM_FREE_VALUES))
    return np.where(free, values, decoded)


# BM25Similarity.LENGTH_TABLE, and the norm byte of every length a posting can record.
LENGTH_TABLE = decoded_lengths(np.arange(256)).astype(np.float32)
NORM_OF_LENGTH = encoded_lengths(np.arange(np.iinfo(np.uint16).max + 1))


def weight(doc_freq: int, doc_count: int) -> np.float32:
    """A term's weight: boost (k1 + 1, as LegacyBM25Similarity passes it) times IDF."""
    idf = np.float32(math.log(1 + (doc_count - doc_freq + 0.5) / (doc_freq + 0.5)))
    return BOOST * idf


def average_length(total_terms: int, doc_count: int) -> np.float32:
    return np.float32(total_terms / doc_count)


def norm_cache(average: np.float32) -> np.ndarray:
    """`1 / (k1 * ((1 - b) + b * LENGTH_TABLE[i] / avgdl))` for each norm byte, in float32."""
    return ONE / (K1 * ((ONE - B) + B * LENGTH_TABLE / average))


def term_scores(
    weight: np.float32, tf: np.ndarray, lengths: np.ndarray, cache: np.ndarray
) -> np.ndarray:
    """One term's score in each chunk holding it (`weight` from `weight()`)."""
    normalised = cache[NORM_OF_LENGTH[lengths]]
    return weight - weight / (ONE + tf.astype(np.float32) * normalised)
