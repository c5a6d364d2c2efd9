"""Table configurations of both papers, the runner that regenerates them, the demo and figures."""

import data  # noqa: F401  (first: sets TensorFlow's load-time defaults before anything loads it)
