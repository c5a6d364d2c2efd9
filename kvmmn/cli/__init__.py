"""The KVM-MN binaries: kvmmn-train (`train`), kvmmn-eval (`evaluate`), kvmmn-export (`export`).

Importing this package loads TensorFlow without its C++ start-up noise (`engine.cli.quiet_tensorflow`) before a
binary's module imports any library."""
from engine import cli as _cli

_cli.quiet_tensorflow()
