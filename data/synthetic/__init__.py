"""The synthetic re-ID dataset: procedurally drawn people in a Market-1501 layout, the embedded default of the demo
and the tests (no real dataset can be downloaded here).

  generate(root=None, *, overwrite=False, progress=False, **SyntheticConfig fields) -> root
  read_config(root) -> SyntheticConfig;  read_metadata(root) -> dict | None
  DEFAULT_ROOT: where the default configuration is generated when no root is given.
  python -m data.synthetic --root=DIR [--num_identities=N ...]: the command-line generator.

Modules: `people` (appearance attributes, look-alike groups, cameras), `render` (drawing), `generator` (layout,
atomic write, metadata with a manifest of every image, `generator.manifest_mismatch`). Read them through
`data.datasets.load("synthetic", root)`.
"""
from data.synthetic.generator import (DEFAULT_ROOT, GENERATOR_VERSION, METADATA_FILE, SyntheticConfig,
                                      default_root, generate, look_alike_groups, make_config, read_config,
                                      read_metadata)

__all__ = ["DEFAULT_ROOT", "GENERATOR_VERSION", "METADATA_FILE", "SyntheticConfig", "default_root", "generate",
           "look_alike_groups", "make_config", "read_config", "read_metadata"]
