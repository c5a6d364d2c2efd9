"""Every binary's module imports beside every other one, in either order: their shared flag names (--dataset,
--checkpoint, --max_rank...) are declared once, so tests and notebooks can load several binaries into one process.
`data.synthetic.__main__` is left out: it only ever runs as its own command, and its --num_identities means
something else than the baseline trainer's."""
import subprocess
import sys

import pytest

BINARIES = ["experiments.demo", "experiments.run", "experiments.figures", "experiments.visrank",
            "kvmmn.train", "kvmmn.evaluate",
            "kvmmn.export", "features.cli.train_baseline", "features.cli.extract", "features.cli.import_features",
            "acp.params", "acp.train", "acp.rerank_cli"]


@pytest.mark.parametrize("order", [BINARIES, BINARIES[::-1]], ids=["forward", "reverse"])
def test_binaries_import_together(order):
    code = "import importlib\nfor name in %r:\n    importlib.import_module(name)\nprint('ok')" % (order,)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
