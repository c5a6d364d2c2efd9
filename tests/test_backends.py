"""Inference on Keras 3's JAX and PyTorch backends equals TensorFlow's, and runs without TensorFlow (issue 19).

Models are built and saved as .keras on TensorFlow in this process; a child process with KERAS_BACKEND set (Keras
reads it once, at import) loads them, makes the same calls (`tests.backend_cases.compute`: KVM-MN embed / score /
score_pairs / attention maps / call with a toy and an Inception V1 backbone, ACP predictions and ACP re-ranking,
the chunked kNN with every metric and with tied distances, every classic re-ranker's distances, top-k lists and
evaluation, and the evaluation of plain features) and must match TensorFlow's outputs to 1e-4, with indices
equal, and with no TensorFlow module imported.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from tests import backend_cases

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("backends"))
    models = backend_cases.make_case(directory)
    _, inputs = backend_cases.load_case(directory)
    return directory, backend_cases.compute(models, inputs)


def run_backend(backend: str, directory: str) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-m", "tests.backend_cases", directory], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{backend} worker failed:\n{result.stderr[-4000:]}"
    with np.load(os.path.join(directory, f"{backend}.npz")) as data:
        return dict(data)


def compare(expected: dict, got: dict) -> list[str]:
    """Names whose values differ beyond TOLERANCE, each with its largest difference.

    Euclidean distances are compared as squares (`backend_cases.EUCLIDEAN`). A re-ranker's top-k list may differ
    from TensorFlow's only where TensorFlow's own distances tie within TOLERANCE: its items' distances (looked up
    in TensorFlow's dense matrix) must equal TensorFlow's top-k distances. Other integers must be equal.
    """
    problems = []
    for name, want in expected.items():
        have = got[name]
        squared = name.startswith(backend_cases.EUCLIDEAN) and ".evaluate." not in name
        if have.shape != want.shape:
            problems.append(f"{name}: shape {have.shape}, TensorFlow {want.shape}")
            continue
        if name.endswith(".top_k.indices"):
            base = name[:-len(".top_k.indices")]
            have = np.take_along_axis(expected[base], have, axis=1)
            want = expected[base + ".top_k.distances"]
        elif np.issubdtype(want.dtype, np.integer) or want.dtype == bool:
            if not np.array_equal(have, want):
                problems.append(f"{name}: {int(np.sum(have != want))} entries differ")
            continue
        if squared:
            have, want = np.square(have.astype(np.float64)), np.square(want.astype(np.float64))
        if not np.allclose(have, want, rtol=TOLERANCE, atol=TOLERANCE):
            problems.append(f"{name}: max |difference| {np.max(np.abs(have - want)):.3g}")
    return problems


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_inference_equals_tensorflow_without_tensorflow(case, backend):
    directory, expected = case
    got = run_backend(backend, directory)
    assert not got.pop("tensorflow_loaded"), f"{backend}: something imported TensorFlow"
    skipped = backend_cases.SKIPPED[backend]
    expected = {name: value for name, value in expected.items() if not name.startswith(skipped)}
    assert sorted(got) == sorted(expected)
    assert compare(expected, got) == []


def test_the_comparison_sees_a_difference(case):
    """The cases are not degenerate: each compared output moves when its input does (scores and attention maps
    are not constant, neighbour lists and rankings are not the identity), so equality above means something."""
    _, expected = case
    for name in ("kvmmn_tiny.score", "kvmmn_inception.embed.pooled", "kvmmn_inception.attention_b", "acp_fusion.predict",
                 "acp_embedding.rerank", "rerank.gnn", "rerank.ecn"):
        assert np.ptp(expected[name]) > 1e-3, name
    assert not np.array_equal(expected["knn.ties.indices"][:, 0], np.arange(30))  # duplicates tie with the row
    for method in backend_cases.RERANK_PARAMS:
        assert 0 < expected[f"rerank.{method}.evaluate.mAP"] < 1, method
    assert np.abs(expected["compiled.after_assign"] - expected["compiled.before_assign"]).max() > 1e-3
