"""Run the Procfile's processes under supervisord: a crashed process is restarted.

`make run` used honcho, which stops every process when one exits: an ingest worker
killed by the OOM killer took the web process and the chat worker down with it.
supervisord (a well-kept supervisor) restarts a process that exits unexpectedly; one
that keeps dying within `START_SECONDS` is retried with a growing back-off (1 s, 2 s,
3 s, ...) and given up on after `START_RETRIES` tries, the others still running. Each
exit, restart and give-up is a line of supervisord's own log, which goes to the
terminal with the processes' output.

The Procfile stays the one list of processes (deploy files and tests read it); this
writes `DATA_DIR/run/supervisord.conf` from it and runs supervisord in the foreground.
Ctrl-C (SIGINT) or SIGTERM stops every process, each with its whole process group.

    python scripts/supervise.py [--procfile Procfile] [--config-only]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A process that stays up this long counted as started; one that dies sooner backs off.
START_SECONDS = 3
START_RETRIES = 10
# Time a process gets to stop on SIGTERM before SIGKILL: the longest drain (the web
# process's WEB_DRAIN_SECONDS, a worker's WORKER_DRAIN_SECONDS; 30 s each by default)
# and a margin for exiting, so `make run`'s Ctrl-C never cuts a drain short.
EXIT_MARGIN_SECONDS = 10


def stop_seconds(env: dict[str, str]) -> int:
    drains = (float(env.get(name) or 30) for name in ("WEB_DRAIN_SECONDS", "WORKER_DRAIN_SECONDS"))
    return int(max(drains)) + EXIT_MARGIN_SECONDS


PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")


@dataclass(frozen=True)
class Process:
    name: str
    command: str


def read_procfile(path: Path) -> list[Process]:
    """The `name: command` lines of a Procfile; blank lines and `#` comments skipped."""
    processes = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PROCFILE_LINE.match(line)
        if match is None:
            raise SystemExit(f"{path}:{number}: expected 'name: command', got {line[:60]!r}")
        processes.append(Process(match.group(1), match.group(2)))
    if not processes:
        raise SystemExit(f"{path} lists no process")
    return processes


def escaped(value: str) -> str:
    """supervisord expands `%(name)s` in its values: a literal % is written %%."""
    return value.replace("%", "%%")


def program_section(process: Process, directory: Path) -> str:
    # Through a shell, as foreman and honcho run Procfile lines (`${PORT:-8000}`); `exec`
    # so the signal reaches the process itself.
    command = "/bin/sh -c " + shlex.quote(f"exec {process.command}")
    return f"""
[program:{process.name}]
command={escaped(command)}
directory={escaped(str(directory))}
autostart=true
autorestart=true
startsecs={START_SECONDS}
startretries={START_RETRIES}
stopsignal=TERM
stopwaitsecs={stop_seconds(dict(os.environ))}
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile=/dev/stdout
stdout_logfile_maxbytes=0
"""


def supervisord_config(processes: list[Process], run_dir: Path, directory: Path) -> str:
    run = escaped(str(run_dir))
    head = f"""; Written by scripts/supervise.py from the Procfile: edit the Procfile, not this.
[supervisord]
; In the foreground supervisord writes its log to stdout itself; no second copy.
nodaemon=true
logfile=/dev/null
logfile_maxbytes=0
loglevel=info
pidfile={run}/supervisord.pid
childlogdir={run}
identifier=sluice

[unix_http_server]
file={run}/supervisor.sock
chmod=0700

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{run}/supervisor.sock
"""
    return head + "".join(program_section(p, directory) for p in processes)


def write_config(procfile: Path, data_dir: Path) -> Path:
    run_dir = data_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / "supervisord.conf"
    config.write_text(supervisord_config(read_procfile(procfile), run_dir, ROOT), "utf-8")
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--procfile", type=Path, default=ROOT / "Procfile")
    parser.add_argument("--config-only", action="store_true", help="write the config, exit")
    args = parser.parse_args()
    data_dir = Path(os.environ.get("DATA_DIR") or ROOT / "data").resolve()
    config = write_config(args.procfile, data_dir)
    if args.config_only:
        print(config)
        return
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "supervisor.supervisord", "-c", str(config)])


if __name__ == "__main__":
    main()
