"""benchmarks/gpu.py, the GPU benchmark without TensorFlow, runs end to end on the CPU at its small sizes.

PyTorch only here: on JAX every operation is compiled for each new shape, which takes minutes on two CPU cores
whatever the sizes (JAX's inference paths are compared with TensorFlow's in tests/test_backends.py).
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_benchmark_runs_on_the_cpu_without_tensorflow(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu.py"), "--scale=small",
                             "--backends=torch", f"--output_dir={tmp_path}", "--time_limit=900"],
                            cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "gpu_small.json") as f:
        report = json.load(f)
    rows = report["rows"]
    names = [row["benchmark"] for row in rows]
    assert names == ["knn", "rerank aqe", "rerank alpha_qe", "rerank k_reciprocal", "rerank alpha_qe_k_reciprocal",
                     "rerank sca", "rerank ecn", "rerank gnn", "rerank acp (ACP-Basic)",
                     "kvmmn_score (cached memories)", "kvmmn_embed"]
    for row in rows:
        assert row["status"] == "ok", row
        assert row["backend"] == "torch" and row["device"] == "cpu" and row["precision"].startswith("float32")
        assert row["tensorflow_loaded"] is False
        assert row["seconds"] > 0
    assert rows[0]["rows_per_s"] > 0 and rows[-2]["pairs_per_s"] > 0 and rows[-1]["images_per_s"] > 0
    assert (tmp_path / "gpu_small.md").read_text().count("| torch |") == len(rows)
