"""Imported by the parse forkserver only (`parsing/runner.py` PRELOAD): loads what
chunking needs once, so each parse child inherits it instead of paying about a second for
the tokenizer and another for jieba's dictionary. Importing it anywhere else only costs
that load in that process."""

from backend.knowledge import chunked_parse  # noqa: F401  (the child's target, imported)
from backend.providers.tokens import encoding
from backend.search.analyzer import segmenter

encoding().encode_ordinary("warm-up")
segmenter()
