"""Search over chunks: the text analyzer, the store interface and its implementations."""
