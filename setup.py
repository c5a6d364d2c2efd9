"""Install KVM-MN and ACP re-identification: `pip install -e .[test]` (the Makefile does this)."""
from setuptools import find_packages, setup

CONSOLE_SCRIPTS = []

setup(
    name="reid-kvmmn-acp",
    version="0.1.0",
    description="TensorFlow 2 / Keras 3 reference implementation of KVM-MN (AAAI 2019) and ACP (IEEE TMM 2022)",
    python_requires=">=3.10",
    packages=find_packages(include=["kvmmn*", "acp*", "data*", "engine*", "experiments*", "benchmarks*"]),
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "numpy>=1.26",
        "absl-py>=2.1",
        "opencv-python-headless>=4.9",
        "h5py>=3.10",
        "scipy>=1.11",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3.5"],
        "plots": ["matplotlib>=3.8", "scikit-learn>=1.4"],
    },
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
