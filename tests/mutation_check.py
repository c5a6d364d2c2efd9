"""The mutation check: does the suite catch deliberate bugs? Outside the default test run (`make mutation`).

Each mutation of `tests/mutations.py` replaces one exact piece of source (it must occur exactly once, or the
mutation is reported stale: the code moved and the list needs updating) in a temporary copy of the working tree,
then runs the named test files there. A mutation is caught when those tests fail.

    python -m tests.mutation_check                     # every mutation
    python -m tests.mutation_check --only=acp_ --list  # names matching a prefix; --list only prints them

Exit status: 0 when every mutation is caught, 1 when one survives or is stale.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from tests.mutations import MUTATIONS  # noqa: E402


def tracked_files(root: str) -> list[str]:
    """Files of the working tree that git does not ignore (tracked or not), relative to `root`."""
    listing = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=root,
                             check=True, capture_output=True).stdout.decode()
    return [path for path in listing.split("\0") if path and os.path.isfile(os.path.join(root, path))]


def copy_tree(root: str, destination: str) -> None:
    for path in tracked_files(root):
        target = os.path.join(destination, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(root, path), target)


def apply(mutation: dict, tree: str) -> str | None:
    """Apply every (file, old, new) edit of `mutation` in `tree`; returns None, or why the mutation is stale."""
    for path, old, new in mutation["edits"]:
        full = os.path.join(tree, path)
        if not os.path.isfile(full):
            return f"{path} does not exist"
        with open(full, encoding="utf-8") as handle:
            text = handle.read()
        count = text.count(old)
        if count != 1:
            return f"{path}: the text to replace occurs {count} times (expected once): {old[:60]!r}"
        with open(full, "w", encoding="utf-8") as handle:
            handle.write(text.replace(old, new))
    return None


def run(mutation: dict, timeout: int) -> tuple[str, float, str]:
    """("caught" | "SURVIVED" | "STALE" | "TIMEOUT", seconds, detail) of one mutation in a fresh copy."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mutation-") as tree:
        copy_tree(ROOT, tree)
        stale = apply(mutation, tree)
        if stale:
            return "STALE", 0.0, stale
        command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *mutation["tests"]]
        if mutation.get("select"):
            command += ["-k", mutation["select"]]
        # The copy's packages come first on sys.path, ahead of the editable install of the original tree.
        env = dict(os.environ, PYTHONPATH=tree + os.pathsep + os.environ.get("PYTHONPATH", ""))
        try:
            result = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "TIMEOUT", time.perf_counter() - started, f"tests ran past {timeout} s"
        last = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
        return ("caught" if result.returncode != 0 else "SURVIVED"), time.perf_counter() - started, last


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run the mutations whose names start with this prefix")
    parser.add_argument("--list", action="store_true", help="print the mutations and exit")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed for one mutation's tests")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if m["name"].startswith(args.only)]
    if not chosen:
        print(f"--only={args.only}: no mutation has that prefix", file=sys.stderr)
        return 2
    if args.list:
        for m in chosen:
            print(f"{m['name']}: {m['why']}  [{' '.join(m['tests'])}]")
        return 0
    outcomes = []
    for m in chosen:
        outcome, seconds, detail = run(m, args.timeout)
        outcomes.append(outcome)
        print(f"{outcome:<8} {m['name']:<40} {seconds:6.0f} s  {detail}", flush=True)
    caught = outcomes.count("caught")
    print(f"{caught} of {len(outcomes)} mutations caught")
    return 0 if caught == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
