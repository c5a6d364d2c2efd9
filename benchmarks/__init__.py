"""Speed and memory benchmarks; each writes JSON + Markdown through `benchmarks.harness`."""

import data  # noqa: F401  (first: sets TensorFlow's load-time defaults before anything loads it)
