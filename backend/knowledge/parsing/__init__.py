"""Document parsing: stored files to sections of text with positions, or Q/A pairs.

    parsed = run_parse_with_limits(path, fmt, chunk_method, timeout_s, memory_limit)
    chunks = chunk_document(parsed, chunk_method, parser_config)   # backend.knowledge.chunking

One module per format family; `parse.py` dispatches, `runner.py` runs a parse in a
child process under time and memory limits, `packages.py` guards Office files.
"""

from backend.knowledge.parsing.document import ParsedDocument, ParseFailure, QAPair, Section
from backend.knowledge.parsing.parse import parse_document
from backend.knowledge.parsing.runner import run_parse_with_limits

__all__ = [
    "ParseFailure",
    "ParsedDocument",
    "QAPair",
    "Section",
    "parse_document",
    "run_parse_with_limits",
]
