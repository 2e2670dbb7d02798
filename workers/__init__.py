"""arq worker processes: `chat` (LLM streaming) and `ingest` (parse, chunk, embed, index)."""
