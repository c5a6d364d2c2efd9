"""The binaries of the features package: acp-baseline-train (`train_baseline`), acp-extract (`extract`),
acp-import-features (`import_features`).

Importing this package loads TensorFlow without its C++ start-up noise (`engine.cli.quiet_tensorflow`) before a
binary's module imports any library."""
from engine import cli as _cli

_cli.quiet_tensorflow()
