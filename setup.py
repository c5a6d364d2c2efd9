"""Install KVM-MN and ACP re-identification: `pip install -e .[test]` (the Makefile does this)."""
from setuptools import find_packages, setup

CONSOLE_SCRIPTS = [
    "reid-demo = experiments.cli.demo:run",
    "reid-synthetic = data.cli.synthetic:run",
    "reid-benchmarks = benchmarks.run:run",
    "reid-experiments = experiments.cli.run:run",
    "reid-figures = experiments.cli.figures:run",
    "reid-visrank = experiments.cli.visrank:run",
    "kvmmn-train = kvmmn.cli.train:run",
    "kvmmn-eval = kvmmn.cli.evaluate:run",
    "kvmmn-export = kvmmn.cli.export:run",
    "acp-baseline-export = features.cli.export_baseline:run",
    "acp-export = acp.cli.export:run",
    "acp-baseline-train = features.cli.train_baseline:run",
    "acp-extract = features.cli.extract:run",
    "acp-import-features = features.cli.import_features:run",
    "acp-params = acp.cli.params:run",
    "acp-train = acp.cli.train:run",
    "acp-rerank = acp.cli.rerank:run",
]

setup(
    name="reid-kvmmn-acp",
    version="0.1.0",
    description="TensorFlow 2 / Keras 3 reference implementation of KVM-MN (AAAI 2019) and ACP (IEEE TMM 2022)",
    python_requires=">=3.10",
    packages=find_packages(include=["kvmmn*", "acp*", "features*", "rerank*", "data*", "engine*", "experiments*",
                                  "benchmarks*"]),
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "numpy>=1.26",
        "absl-py>=2.1",
        "opencv-python-headless>=4.9",
        "h5py>=3.10",
        "scipy>=1.11",
        "simplejpeg>=1.9",  # strict JPEG decoding: libjpeg warnings as errors (data.pipeline.read_image)
    ],
    extras_require={
        # JAX and PyTorch for the backend tests (tests/test_backends.py). torch==2.13.0: the CPU build this machine
        # image carries (43 s to install); any other release or range takes a CUDA build of several GB from PyPI.
        "test": ["pytest>=8", "pytest-xdist>=3.5", "matplotlib>=3.8", "scikit-learn>=1.4", "jax[cpu]>=0.5",
                 "torch==2.13.0"],
        # re-ranking and inference on JAX without TensorFlow: `pip install --no-deps -e .` and then these (README,
        # "Keras backends"); with TensorFlow installed too, `pip install -e .[jax]` adds JAX beside it
        "jax": ["keras>=3.10", "jax[cpu]>=0.5", "numpy>=1.26", "scipy>=1.11", "absl-py>=2.1"],
        "plots": ["matplotlib>=3.8", "scikit-learn>=1.4"],
        # CUDA and cuDNN from pip for TensorFlow on an NVIDIA GPU (Linux): `pip install -e .[gpu]`
        "gpu": ["tensorflow[and-cuda]>=2.21,<2.22"],
        # the viewer of the training curves every trainer writes (`tensorboard --logdir=runs`)
        "tensorboard": ["tensorboard>=2.20"],
        # ONNX conversion of the exported signatures and its runtime (tests/test_serving_convert.py)
        "onnx": ["tf2onnx>=1.17", "onnxruntime>=1.20"],
    },
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
