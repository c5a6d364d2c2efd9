"""KVM-MN: key-value memory co-attention matching network for person re-ID (Zhang, Li, Zhang, AAAI 2019)."""
