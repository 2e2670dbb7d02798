"""What `bench.bench_streaming` measured on one stack, and the issue's targets side by side.

Each stack (the code under test, and with `--base DIR` the code of another checkout,
measured in the same run on the same VM) fills one `Figures`; `compare` prints the
targets of docs/streaming.md as a table with a column per stack, so the VM's drift
between runs cancels out of the ratios.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ADDED_P99_LIMIT_MS = 100.0


@dataclass(frozen=True)
class Level:
    """One first-token level: the raw provider's first token, Sluice's, and the cores the
    Sluice processes kept busy meanwhile."""

    streams: int
    raw_p50: float
    raw_p99: float
    p50: float
    p99: float
    answers: int
    failed: int
    web_cores: float
    worker_cores: float

    @property
    def added_p50(self) -> float:
        return self.p50 - self.raw_p50

    @property
    def added_p99(self) -> float:
        return self.p99 - self.raw_p99

    @property
    def sluice_cores(self) -> float:
        return self.web_cores + self.worker_cores


@dataclass(frozen=True)
class Throughput:
    streams: int
    raw_tokens_per_s: float
    tokens_per_s: float
    cpu_ms_per_answer: float
    cpu_s_per_1k_tokens: float
    raw_cpu_s_per_1k_tokens: float
    failed: int

    @property
    def rate_ratio(self) -> float:
        return self.tokens_per_s / self.raw_tokens_per_s


@dataclass(frozen=True)
class CostSplit:
    """CPU per answer of two answer lengths, per process, solved for a fixed part and a
    part per token: cost(n) = fixed + n * per_token."""

    streams: int
    short_tokens: float
    long_tokens: float
    short_ms: dict[str, float]
    long_ms: dict[str, float]

    def per_token_us(self, process: str) -> float:
        spread = self.long_tokens - self.short_tokens
        return (self.long_ms[process] - self.short_ms[process]) * 1000 / spread

    def fixed_ms(self, process: str) -> float:
        return self.short_ms[process] - self.per_token_us(process) * self.short_tokens / 1000


@dataclass
class Figures:
    label: str
    levels: dict[int, Level] = field(default_factory=dict)
    throughput: Throughput | None = None
    costs: CostSplit | None = None
    idle_kb: float | None = None

    def streams_per_core(self) -> tuple[float, Level | None]:
        """The highest level whose added p99 stays within the limit, per Sluice core."""
        within = [
            level
            for level in self.levels.values()
            if level.added_p99 <= ADDED_P99_LIMIT_MS and not level.failed and level.streams > 1
        ]
        if not within:
            return float("nan"), None
        best = max(within, key=lambda level: level.streams)
        return best.streams / max(best.sluice_cores, 1e-9), best


def fmt(value: float | None, spec: str = ".1f", unit: str = "") -> str:
    if value is None or value != value:
        return "-"
    return f"{value:{spec}}{unit}"


def print_costs(figures: Figures) -> None:
    costs = figures.costs
    if costs is None:
        return
    print(
        f"\n[{figures.label}] where an answer's CPU goes ({costs.streams} streams; answers of "
        f"{costs.short_tokens:.0f} and {costs.long_tokens:.0f} tokens)"
    )
    print(f"{'process':<8} {'fixed ms/answer':>16} {'µs per token':>13} {'60-token answer':>16}")
    for process in ("web", "worker"):
        fixed, per_token = costs.fixed_ms(process), costs.per_token_us(process)
        print(
            f"{process:<8} {fixed:>16.2f} {per_token:>13.1f} {fixed + 60 * per_token / 1000:>16.2f}"
        )


def compare(stacks: list[Figures]) -> None:
    """The issue's targets, one column per stack (the base first)."""
    width = 20
    print("\n== targets (docs/streaming.md) ==")
    print(f"{'measure':<48}" + "".join(f"{f.label:>{width}}" for f in stacks) + "  target")

    def row(name: str, values: list[str], target: str) -> None:
        print(f"{name:<48}" + "".join(f"{v:>{width}}" for v in values) + f"  {target}")

    throughputs = [f.throughput for f in stacks]
    row(
        "CPU per 60-token answer at saturation (ms)",
        [fmt(t.cpu_ms_per_answer if t else None) for t in throughputs],
        "<= 16 ms, and <= half the base",
    )
    if len(stacks) > 1 and throughputs[0] and throughputs[-1]:
        ratio = throughputs[-1].cpu_ms_per_answer / throughputs[0].cpu_ms_per_answer
        row("  ratio to the base", ["1.00", *[fmt(ratio, ".2f")] * (len(stacks) - 1)], "<= 0.50")
    row(
        "tokens/s at saturation vs raw provider",
        [fmt(t.rate_ratio if t else None, ".2f", "x") for t in throughputs],
        ">= 0.25x",
    )
    for streams, target in ((1, "p50 <= 8, p99 <= 15 ms"), (20, "p99 <= 50 ms")):
        levels = [f.levels.get(streams) for f in stacks]
        row(
            f"added first token, {streams} stream(s), p50 / p99 (ms)",
            [f"{fmt(lv.added_p50)} / {fmt(lv.added_p99)}" if lv else "-" for lv in levels],
            target,
        )
    per_core = [f.streams_per_core() for f in stacks]
    row(
        f"streams per core at added p99 <= {ADDED_P99_LIMIT_MS:g} ms",
        [
            f"{fmt(value, '.0f')} ({lv.streams} on {lv.sluice_cores:.2f})" if lv else "-"
            for value, lv in per_core
        ],
        ">= 50",
    )
    row("web RSS per idle SSE stream (KB)", [fmt(f.idle_kb) for f in stacks], "<= 40 KB")
    for figures in stacks:
        print_costs(figures)
