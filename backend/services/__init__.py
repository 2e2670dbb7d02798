"""Business rules, each once. Routes and workers call these."""
