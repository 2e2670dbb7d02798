"""Loaded by every Python process bench_garbage_collector starts (its PYTHONPATH): in a
web serving process or a chat worker it times each collection on the thread's CPU clock
and writes them to $GC_PROBE_DIR/<role>-<pid>.json every second."""

import gc
import json
import os
import threading
import time

with open("/proc/self/cmdline", "rb") as _cmdline:
    _command = _cmdline.read().split(b"\0")
_joined = b" ".join(_command)
_serving = b"spawn_main" in _joined or b"backend.asgi" in _joined
_serving = _serving or (_command[1:3] == [b"-m", b"backend"] and b"web" in _command)
_role = "worker" if b"workers" in _command else "web" if _serving else ""
if _role and os.environ.get("GC_PROBE_DIR"):
    _collections: list[tuple[int, float, float]] = []
    _started = [0.0]

    def _timed(phase: str, info: dict) -> None:
        if phase == "start":
            _started[0] = time.thread_time()
        else:
            _collections.append(
                (info["generation"], time.thread_time() - _started[0], time.monotonic())
            )

    def _write() -> None:
        path = os.path.join(os.environ["GC_PROBE_DIR"], f"{_role}-{os.getpid()}.json")
        while True:
            time.sleep(1)
            with open(path + ".tmp", "w") as out:
                json.dump(_collections, out)
            os.replace(path + ".tmp", path)

    gc.callbacks.append(_timed)
    threading.Thread(target=_write, daemon=True).start()
