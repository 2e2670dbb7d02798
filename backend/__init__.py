"""Sluice web process: validates, authorizes, writes SQL rows, enqueues jobs, relays events."""
