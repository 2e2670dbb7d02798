"""Prometheus metrics: what every process measures (`instruments`), how a web process
serves them, summed over its processes (`exposition`), and the worker's own endpoint
(`worker_endpoint`). docs/operations.md lists every metric and how access is guarded.

The lowest layer: any module may import `backend.metrics.instruments` and count.
"""
