"""What the binaries of both models share: distribution strategy, the resumable training loop, logging."""
