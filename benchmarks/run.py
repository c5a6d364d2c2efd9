"""reid-benchmarks: run every benchmark (`benchmarks/bench_*.py`) with its own small default flags.

    reid-benchmarks                      # all of them (or python -m benchmarks.run)
    reid-benchmarks --only=evaluation    # a comma-separated subset, by topic (`bench_<topic>`)

Each benchmark runs in its own Python process, so that one benchmark's memory stays out of the next one's
peak-memory figures (each keeps its flags in its own `engine.cli.new_flags()`, so importing them side by side
declares nothing). Results land in benchmarks/results/ as each benchmark writes them.
"""
from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
import time

from absl import flags

from engine import cli

FLAGS = cli.new_flags()
flags.DEFINE_list("only", [], "Topics to run (e.g. evaluation for bench_evaluation); all when empty.",
                  flag_values=FLAGS)
flags.DEFINE_bool("keep_going", True, "Run the remaining benchmarks after one fails.", flag_values=FLAGS)

PREFIX = "bench_"


def discover() -> list[str]:
    """Topics of the benchmark modules in this package, sorted (`bench_evaluation.py` -> `evaluation`)."""
    here = os.path.dirname(os.path.abspath(__file__))
    return sorted(m.name[len(PREFIX):] for m in pkgutil.iter_modules([here]) if m.name.startswith(PREFIX))


def select(available: list[str], only: list[str]) -> list[str]:
    """The topics named in `only` (with or without the `bench_` prefix), or all; unknown names are an error."""
    wanted = [name[len(PREFIX):] if name.startswith(PREFIX) else name for name in only]
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise ValueError(f"--only names unknown benchmarks {unknown}; available: {available}")
    return wanted or available


def run_benchmark(topic: str) -> int:
    """Run `python -m benchmarks.bench_<topic>` from the repository root; return its exit status."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    print(f"=== {PREFIX}{topic}", flush=True)
    start = time.perf_counter()
    status = subprocess.run([sys.executable, "-m", f"benchmarks.{PREFIX}{topic}"], cwd=root, check=False).returncode
    print(f"=== {PREFIX}{topic}: {'ok' if status == 0 else f'FAILED (exit {status})'} "
          f"in {time.perf_counter() - start:.1f} s", flush=True)
    return status


def main(argv):
    del argv
    topics = select(discover(), FLAGS["only"].value)
    failed = []
    for topic in topics:
        if run_benchmark(topic) != 0:
            failed.append(topic)
            if not FLAGS["keep_going"].value:
                break
    if failed:
        raise SystemExit(f"benchmarks failed: {', '.join(failed)}")


def run():
    cli.run(main, FLAGS, __doc__)


if __name__ == "__main__":
    run()
