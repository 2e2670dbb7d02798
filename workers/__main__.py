"""`python -m workers chat|ingest [--check]`: run a queue's worker, or check its health."""

from workers.queue_worker import main

main()
