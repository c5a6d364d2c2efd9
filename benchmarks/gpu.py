"""GPU benchmark without TensorFlow (issue 19): kNN, every re-ranker, ACP and KVM-MN inference on JAX and PyTorch.

Runs on a bare machine with CUDA, JAX and PyTorch but neither TensorFlow nor a network: it installs nothing from
the network. Keras and its small needs may come as wheels in a folder (`--wheels DIR`), installed with
`pip --no-index --no-deps` into a temporary folder that only this script's processes see. Each backend runs
in its own process (KERAS_BACKEND must be set before Keras is imported), one after the other, within
--time_limit seconds all together (8 minutes by default; a measurement that would start after its backend's share
is recorded as skipped). Rows, each with its device, backend and precision:

- knn: the k = 27 nearest of 100,000 x 2048 embeddings among themselves (`rerank.knn.knn`, chunks of 512 rows);
- every classic re-ranker (`rerank.METHODS`, first-order neighbourhood k / k1 = 27 = N/C as Table IV sets it) and
  ACP-Basic (Table II, multi-block fusion; untrained weights, f3 / f4 / f5 cut from the embeddings: timing only) at
  MSMT17 scale: 93,820 embeddings of width 2048 (synthetic, `rerank.synthetic`); the time includes producing
  every re-ranked query-gallery distance (block by block, nothing Q x G kept), not their evaluation;
- kvmmn_score: KVM-MN at the paper's configuration (Table 1: Inception V1, 224 x 112, d = 512, H = 4) scoring
  queries against galleries from cached memories (`KVMMN.score`), pairs/s;
- kvmmn_embed: the same model embedding images (`KVMMN.embed`), images/s.

Results: <output_dir>/gpu.json and gpu.md (`--scale=small`: gpu_small.*; the test suite runs that on the CPU).

    python benchmarks/gpu.py                      # both backends, full sizes
    python benchmarks/gpu.py --wheels=wheels/     # keras from a folder of wheels
    python benchmarks/gpu.py --scale=small --backends=jax
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = ("jax", "torch")
SCALES = {
    # MSMT17: 11,659 queries + 82,161 gallery = 93,820 images; N/C of its gallery = 82,161 / 3,060 = 26.9 -> 27.
    "full": dict(knn_rows=100_000, rerank_rows=93_820, dim=2048, k1=27, chunk_size=512, kvmmn="paper",
                 queries=16, gallery=512, gallery_batch_size=128, embed_batch=64, repeats=3),
    "small": dict(knn_rows=1_500, rerank_rows=600, dim=64, k1=8, chunk_size=256, kvmmn="tiny",
                  queries=2, gallery=16, gallery_batch_size=8, embed_batch=4, repeats=1),
}
RESULT_NAMES = {"full": "gpu", "small": "gpu_small"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="comma-separated Keras backends to measure, each in its own process (jax, torch)")
    parser.add_argument("--scale", choices=sorted(SCALES), default="full",
                        help="full: the sizes of the module docstring; small: a CPU smoke run (the test suite)")
    parser.add_argument("--wheels", default=None,
                        help="a folder of wheels installed offline, each without dependencies, when Keras is missing: "
                             "keras and what the machine lacks of its needs (absl-py, namex, optree, rich, "
                             "markdown-it-py, mdurl, pygments, h5py)")
    parser.add_argument("--output_dir", default=os.path.join(ROOT, "benchmarks", "results"),
                        help="where gpu.json and gpu.md are written")
    parser.add_argument("--time_limit", type=float, default=480.0,
                        help="seconds for all backends together, shared equally")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: KERAS_BACKEND of a child
    parser.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.backends = [b for b in args.backends.split(",") if b]
    unknown = sorted(set(args.backends) - set(BACKENDS))
    if unknown:
        parser.error(f"--backends: unknown {unknown}; choose from {', '.join(BACKENDS)}")
    if args.time_limit <= 0:
        parser.error(f"--time_limit must be positive, got {args.time_limit}")
    if args.wheels is not None and not os.path.isdir(args.wheels):
        parser.error(f"--wheels: {args.wheels} is not a folder")
    return args


# ------------------------------------------------------------------------------------------------------ parent
def _site_with_keras(wheels: str | None, scratch: str) -> str | None:
    """A folder holding Keras for the children's sys.path, installed offline from `wheels`; None when Keras is
    already importable."""
    probe = subprocess.run([sys.executable, "-c", "import keras"], capture_output=True, env=_child_env("jax", None))
    if probe.returncode == 0:
        return None
    if wheels is None:
        raise SystemExit("Keras is not installed: give --wheels=DIR with a keras wheel and its needs (pip download "
                         "keras -d DIR on a machine with a network)")
    # Every wheel of the folder, without resolving dependencies: what the machine already has (numpy, ml_dtypes,
    # built for its JAX and PyTorch) must not be shadowed by another copy, and pip must not look for anything else.
    found = sorted(os.path.join(wheels, name) for name in os.listdir(wheels) if name.endswith(".whl"))
    if not any(os.path.basename(path).lower().startswith("keras-") for path in found):
        raise SystemExit(f"--wheels={wheels} holds no keras wheel")
    target = os.path.join(scratch, "site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--target", target,
                    "--quiet", *found], check=True)
    return target


def _child_env(backend: str, site: str | None) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, site, env.get("PYTHONPATH")) if p)
    return env


def run(argv=None) -> tuple[str, str]:
    args = parse_args(argv)
    if args.worker:
        return _worker(args)
    start = time.monotonic()
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as scratch:
        site = _site_with_keras(args.wheels, scratch)
        for i, backend in enumerate(args.backends):
            share = (args.time_limit - (time.monotonic() - start)) / (len(args.backends) - i)
            out = os.path.join(scratch, f"{backend}.json")
            command = [sys.executable, os.path.abspath(__file__), f"--worker={backend}", f"--scale={args.scale}",
                       f"--output_dir={out}", f"--deadline={time.time() + share}"]
            child = subprocess.run(command, env=_child_env(backend, site), cwd=ROOT)
            if child.returncode != 0 or not os.path.exists(out):
                rows.append({"backend": backend, "benchmark": "all", "status": f"failed (exit {child.returncode})"})
                continue
            with open(out) as f:
                rows.extend(json.load(f))
    sys.path.insert(0, ROOT)
    from benchmarks import harness

    meta = {"scale": args.scale, **SCALES[args.scale], "seconds": round(time.monotonic() - start, 1),
            "weights": "untrained (timing only)",
            "note": "figures of a CPU smoke run unless device says cuda/gpu"}
    paths = harness.write_results(RESULT_NAMES[args.scale], rows, meta,
                                  "KVM-MN and re-ranking inference on JAX and PyTorch (no TensorFlow)",
                                  args.output_dir)
    print("\n".join(paths))
    return paths


# ------------------------------------------------------------------------------------------------------ worker
def _precision(backend: str) -> str:
    """float32 everywhere; what the backend's float32 matmul really computes with (TF32 on recent NVIDIA GPUs)."""
    if backend == "jax":
        import jax

        return f"float32 (jax_default_matmul_precision={jax.config.jax_default_matmul_precision or 'default'})"
    import torch

    return (f"float32 (float32_matmul_precision={torch.get_float32_matmul_precision()}, "
            f"cuda.matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32})")


def _device(backend: str) -> str:
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return f"{device.platform} ({device.device_kind})"
    import torch

    return f"cuda ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else "cpu"


def _synchronize(x) -> None:
    """Wait until `x` is computed: the backends run asynchronously on a GPU, so a timing must end here."""
    import keras

    for leaf in keras.tree.flatten(x):
        keras.ops.convert_to_numpy(keras.ops.ravel(leaf)[:1])


def _worker(args) -> None:
    """Measure everything on this process's backend; write the rows as JSON to args.output_dir (a file)."""
    import keras
    import numpy as np

    backend = keras.backend.backend()
    sizes = SCALES[args.scale]
    base = {"backend": backend, "device": _device(backend), "precision": _precision(backend),
            "tensorflow_loaded": False}
    rows = []

    def measure(name: str, fn, **fields):
        row = {**base, "benchmark": name, **fields}
        if time.time() > args.deadline:
            row["status"] = "skipped (time limit)"
        else:
            try:
                row.update(fn())
                row["status"] = "ok"
            except Exception as error:  # one failed measurement must not lose the others' figures
                row["status"] = f"failed: {type(error).__name__}: {error}"[:300]
        print(json.dumps(row), flush=True)
        rows.append(row)

    from rerank import METHODS
    from rerank.knn import knn
    from rerank.synthetic import clustered_embeddings

    def time_knn():
        x = np.random.default_rng(0).standard_normal((sizes["knn_rows"], sizes["dim"]), dtype=np.float32)
        knn(x[:sizes["chunk_size"]], x, sizes["k1"], chunk_size=sizes["chunk_size"])  # warm-up: compile
        start = time.perf_counter()
        knn(x, x, sizes["k1"], chunk_size=sizes["chunk_size"])
        seconds = time.perf_counter() - start
        return {"n": sizes["knn_rows"], "dim": sizes["dim"], "k": sizes["k1"], "seconds": round(seconds, 3),
                "rows_per_s": round(sizes["knn_rows"] / seconds, 1)}

    measure("knn", time_knn)

    problem = clustered_embeddings(sizes["rerank_rows"], sizes["dim"], images_per_identity=sizes["k1"], seed=0)
    k1 = sizes["k1"]
    # Warm-up: compile the kNN pass for this N (JAX compiles each operation for each new shape), so the first
    # re-ranker's time is not mostly compilation.
    everything = np.concatenate([problem.query, problem.gallery])
    for metric in ("euclidean", "cosine"):
        knn(everything[:sizes["chunk_size"]], everything, k1 + 1, metric, sizes["chunk_size"], with_row_max=True)
    params = {"aqe": dict(k=k1), "alpha_qe": dict(k=k1), "k_reciprocal": dict(k1=k1),
              "alpha_qe_k_reciprocal": dict(k=k1, k1=k1), "sca": dict(k1=k1), "ecn": dict(k=k1),
              "gnn": dict(k1=k1)}

    def time_rerank(make):
        def timed():
            start = time.perf_counter()
            distances = make()
            checksum = 0.0
            for _, _, block in distances.iter_blocks():
                checksum += float(block[:, 0].sum())
            seconds = time.perf_counter() - start
            return {"n": sizes["rerank_rows"], "queries": len(problem.query), "gallery": len(problem.gallery),
                    "dim": sizes["dim"], "seconds": round(seconds, 3), "checksum": round(checksum, 3)}
        return timed

    for method in METHODS:
        measure(f"rerank {method}", time_rerank(lambda m=method: METHODS[m](
            problem.query, problem.gallery, chunk_size=sizes["chunk_size"], **params[m])),
                params=params[method])

    from acp import acp_rerank
    from acp import model as acp_model

    def acp_inputs():
        widths = acp_model.PRESETS["basic"].block_dims
        return [{name: part[:, :width] for name, width in zip(acp_model.BLOCK_NAMES, widths)}
                for part in (problem.query, problem.gallery)]

    if sizes["dim"] >= max(acp_model.PRESETS["basic"].block_dims):
        acp = acp_model.build_acp("basic")
        inputs = acp_inputs()
    else:  # small scale: the embedding is narrower than f5, so ACP-Basic without fusion reads it directly
        acp = acp_model.build_acp("basic", use_fusion=False, embedding_dim=sizes["dim"])
        inputs = [None, None]
    measure("rerank acp (ACP-Basic)", time_rerank(lambda: acp_rerank.acp_rerank(
        problem.query, problem.gallery, acp, k1=k1, query_inputs=inputs[0], gallery_inputs=inputs[1],
        chunk_size=sizes["chunk_size"])), params={"k1": k1, "k2": acp_rerank.DEFAULT_K2})

    from engine.backend import compiled_inference
    from kvmmn.model import KVMMN, KVMMNConfig

    config = (KVMMNConfig() if sizes["kvmmn"] == "paper" else
              KVMMNConfig(backbone="tiny", image_size=(64, 32), feature_dim=16, num_heads=2, key_dim=4,
                          value_dim=4, score_hidden_units=8))
    model = KVMMN(config)
    rng = np.random.default_rng(1)
    description = (f"{config.backbone}, {config.image_size[0]}x{config.image_size[1]}, d={config.feature_dim}, "
                   f"H={config.num_heads}")

    def memories(count):
        shapes = model.memory_shapes(count)
        return {name: keras.ops.convert_to_tensor(rng.standard_normal(shape).astype("float32") * 0.1)
                for name, shape in shapes.items()}

    def best_of(fn, *arrays):
        _synchronize(fn(*arrays))  # warm-up: compile
        times = []
        for _ in range(sizes["repeats"]):
            start = time.perf_counter()
            _synchronize(fn(*arrays))
            times.append(time.perf_counter() - start)
        return min(times)

    def time_score():
        query, gallery = memories(sizes["queries"]), memories(sizes["gallery"])
        score = compiled_inference(model, lambda kq, rq, kg, vg: model.score(
            {"keys": kq, "reference_comparison": rq}, {"keys": kg, "values": vg},
            gallery_batch_size=sizes["gallery_batch_size"]))
        seconds = best_of(score, query["keys"], query["reference_comparison"], gallery["keys"], gallery["values"])
        pairs = sizes["queries"] * sizes["gallery"]
        return {"model": description, "pairs": pairs, "seconds": round(seconds, 4),
                "pairs_per_s": round(pairs / seconds, 1), "ms_per_pair": round(1000 * seconds / pairs, 4)}

    def time_embed():
        images = keras.ops.convert_to_tensor(
            rng.uniform(-1, 1, (sizes["embed_batch"], *config.image_size, 3)).astype("float32"))
        embed = compiled_inference(model, lambda x: model.embed(x))
        seconds = best_of(embed, images)
        return {"model": description, "images": sizes["embed_batch"], "seconds": round(seconds, 4),
                "images_per_s": round(sizes["embed_batch"] / seconds, 1)}

    measure("kvmmn_score (cached memories)", time_score)
    measure("kvmmn_embed", time_embed)
    loaded = any(m == "tensorflow" or m.startswith("tensorflow.") for m in sys.modules)
    for row in rows:
        row["tensorflow_loaded"] = loaded
    temporary = f"{args.output_dir}.tmp"
    with open(temporary, "w") as f:
        json.dump(rows, f)
    os.replace(temporary, args.output_dir)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)  # run as a script from a bare checkout: the repository's packages, not installed
    run()
