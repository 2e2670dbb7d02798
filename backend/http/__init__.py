"""The HTTP layer: routes parse, call a service, shape the response."""
