"""Datasets, input pipelines and evaluation protocols shared by KVM-MN and ACP (imports neither model).

Importing this package (every other package of ours does so first) sets TensorFlow's load-time defaults.
"""
import os

# TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, when it loads, and its x86 wheel turns the oneDNN kernels on by
# itself only on CPUs with AVX512_VNNI / AVX512_BF16 / AMX. Elsewhere (this 2-core AMD EPYC with AVX2) float32
# matmul then runs at 28 GFLOPS instead of 75, and the re-rankers' kNN pass is nearly all matmul. A user's own
# setting, e.g. "0", wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
