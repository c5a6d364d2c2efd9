"""The experiment binaries: reid-experiments (`run`), reid-figures (`figures`), reid-demo (`demo`), reid-visrank
(`visrank`).

Importing this package loads TensorFlow without its C++ start-up noise (`engine.cli.quiet_tensorflow`) before a
binary's module imports any library."""
from engine import cli as _cli

_cli.quiet_tensorflow()
