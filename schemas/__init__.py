"""The wire contract: pydantic models for every request, response and streamed event."""
