"""KVM-MN: key-value memory co-attention matching network for person re-ID (Zhang, Li, Zhang, AAAI 2019)."""

import data  # noqa: F401  (first: sets TensorFlow's load-time defaults before anything loads it)
