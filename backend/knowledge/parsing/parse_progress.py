"""Progress out of a parse child ("OCR page 3/12"), and the deadline the worker keeps.

A parse is one step for most documents, but OCR of a scan is many slow ones (0.5-2 s a
page). The child reports each step as it starts (`report`, sent on its pipe by the sink
the runner installs); the worker shows it in the document's progress and gives each
OCR page its own budget (`ParseClock`): a page that takes longer than OCR_PAGE_SECONDS
stops the parse with a reason naming the page, while a long scan whose pages each
finish in time is not cut off by the budget sized for parsing the file's bytes. The
child's CPU limit follows (`allow_cpu`), so the two agree.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

CPU_SLACK_SECONDS = 2


@dataclass(frozen=True, slots=True)
class ParseProgress:
    """A step of a parse starting now: `message` ("OCR page 3/12"), `done` of `total`
    steps done, and how long this step may take (None: the parse's own budget again)."""

    message: str
    done: int
    total: int
    budget_s: float | None = None


_sink: Callable[[ParseProgress], None] | None = None


def set_sink(sink: Callable[[ParseProgress], None] | None) -> None:
    global _sink
    _sink = sink


def report(progress: ParseProgress) -> None:
    if _sink is not None:
        _sink(progress)


def allow_cpu(seconds: float) -> None:
    """Let this process use `seconds` more CPU from now (its soft RLIMIT_CPU), within
    its hard limit; a process without a CPU limit is left so."""
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if soft == resource.RLIM_INFINITY:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    wanted = int(usage.ru_utime + usage.ru_stime + seconds) + CPU_SLACK_SECONDS
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_CPU, (wanted, hard))


class ParseClock:
    """The worker's deadline for a child: the parse's budget, paused while a step with
    a budget of its own runs (each OCR page), resumed when the steps end."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.paused_left: float | None = None
        self.step: ParseProgress | None = None

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def advance(self, progress: ParseProgress) -> None:
        now = time.monotonic()
        if progress.budget_s is not None:
            if self.paused_left is None:
                self.paused_left = max(0.0, self.deadline - now)
            self.deadline = now + progress.budget_s
        elif self.paused_left is not None:
            self.deadline = now + self.paused_left
            self.paused_left = None
        self.step = progress

    def overdue(self) -> str:
        """Why the parse was stopped at its deadline."""
        step = self.step
        if step is not None and step.budget_s is not None:
            return (
                f"{step.message} took longer than {step.budget_s:g} s (OCR_PAGE_SECONDS) and "
                "was stopped: the page is too large or too dense to read in time"
            )
        return (
            f"Parsing took longer than {self.timeout_s:g} s and was stopped: the file is "
            "damaged, or too large to parse in time"
        )
