"""Retrieval benchmarks: quality (`bench/retrieval_quality.py`: nDCG@10 and recall@10 on
`../shared/eval`) and, with `--speed`, speed (`bench/retrieval_speed.py`: p50/p99 at 10k
and 100k chunks on both stores beside a NumPy floor).

Usage: python -m bench.bench_retrieval [--sets ...]
       python -m bench.bench_retrieval --speed [--sizes ...] [--queries N] [--top-k K ...]
           [--embedded-only | --elasticsearch-only]
"""

from __future__ import annotations

import sys


def main() -> None:
    argv = sys.argv[1:]
    if "--speed" in argv:
        argv.remove("--speed")
        from bench import retrieval_speed  # sets BLAS to one thread before NumPy loads

        retrieval_speed.main(argv)
        return
    import argparse
    import asyncio

    from bench import retrieval_quality

    parser = argparse.ArgumentParser(prog="python -m bench.bench_retrieval")
    parser.add_argument("--sets", nargs="+", default=list(retrieval_quality.SETS))
    asyncio.run(retrieval_quality.main(parser.parse_args(argv).sets))


if __name__ == "__main__":
    main()
