"""The benchmark harness: timing, peak-memory measurement, and JSON + Markdown result files.

Every benchmark module calls `write_results(name, rows, ...)`, which writes `benchmarks/results/<name>.json`
and `.md` (or under `out_dir`) with the machine description, so figures are always reported with where they ran.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading
import time
from typing import Any, Callable

from engine import atomic

DEFAULT_OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPU count, memory, processor, Python, TensorFlow and GPUs."""
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "cpu_count": os.cpu_count()}
    try:
        with open("/proc/meminfo") as f:
            info["memory_gb"] = round(int(f.readline().split()[1]) / 2**20, 1)
        with open("/proc/cpuinfo") as f:
            models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu"] = models[0] if models else platform.processor()
    except OSError:
        info["cpu"] = platform.processor()
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        info["tensorflow"] = tf.__version__
        info["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
        info["onednn"] = onednn_setting()
    return info


def onednn_setting() -> str:
    """TF_ENABLE_ONEDNN_OPTS as TensorFlow read it ("1" unless the user chose: see data/__init__.py): it changes
    CPU matmul speed ~2x, so rows merged from several runs (`merge_with_previous`) each carry it."""
    return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Context manager sampling this process's resident memory; `.peak_mb` is the peak above the start.

    The kernel's ru_maxrss is a high-water mark for the process lifetime, so it cannot isolate one measurement;
    sampling every `interval` seconds can miss a spike shorter than that, which is acceptable for the
    allocations of seconds-long benchmarks.
    """

    def __init__(self, interval: float = 0.01):
        self.interval = interval
        self.start_mb = self.peak_mb = 0.0
        self._stop = threading.Event()

    def _sample(self):
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, _rss_bytes())

    def __enter__(self):
        self._base = self._peak = _rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, _rss_bytes())
        self.start_mb = self._base / 2**20
        self.peak_mb = (self._peak - self._base) / 2**20
        return False


def measure(fn: Callable[[], Any], repeats: int = 1, warmup: int = 0) -> dict[str, float]:
    """Run `fn` `warmup` times untimed, then `repeats` times; return best/mean seconds and peak extra memory (MB)."""
    for _ in range(warmup):
        fn()
    times = []
    with PeakMemory() as mem:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return {"seconds_best": min(times), "seconds_mean": sum(times) / len(times), "peak_extra_mb": mem.peak_mb}


def _markdown(name: str, title: str, rows: list[dict[str, Any]], meta: dict[str, Any], info: dict[str, Any]) -> str:
    lines = [f"# {title or name}", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    lines.append("")
    if rows:
        columns = list(dict.fromkeys(c for row in rows for c in row))
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("|" + "---|" * len(columns))
        for row in rows:
            cells = [f"{row[c]:.4g}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in columns]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def merge_with_previous(name: str, rows: list[dict[str, Any]], key: tuple[str, ...],
                        out_dir: str | None = None) -> list[dict[str, Any]]:
    """`rows` plus the rows of `<out_dir>/<name>.json` whose `key` fields match none of them.

    Large sizes take hours on a CPU, so they are measured one run (one size, one method) at a time and added to
    the committed table instead of recomputing it.
    """
    path = os.path.join(out_dir or DEFAULT_OUT_DIR, f"{name}.json")
    if not os.path.exists(path):
        return list(rows)
    with open(path) as f:
        previous = json.load(f)["rows"]
    fresh = {tuple(row.get(k) for k in key) for row in rows}
    return [row for row in previous if tuple(row.get(k) for k in key) not in fresh] + list(rows)


def write_results(name: str, rows: list[dict[str, Any]], meta: dict[str, Any] | None = None, title: str = "",
                  out_dir: str | None = None) -> tuple[str, str]:
    """Write `<out_dir>/<name>.json` and `.md` (rows as a table, plus machine and `meta`); return both paths."""
    out_dir = out_dir or DEFAULT_OUT_DIR
    os.makedirs(out_dir, exist_ok=True)
    meta = dict(meta or {})
    meta.setdefault("date", time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    try:
        meta.setdefault("commit", subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                                 text=True, check=False).stdout.strip() or "unknown")
    except OSError:
        meta.setdefault("commit", "unknown")
    info = machine()
    json_path = os.path.join(out_dir, f"{name}.json")
    md_path = os.path.join(out_dir, f"{name}.md")
    atomic.write_text(json_path, json.dumps({"name": name, "title": title, "machine": info, "meta": meta,
                                             "rows": rows}, indent=2))
    atomic.write_text(md_path, _markdown(name, title, rows, meta, info))
    return json_path, md_path
