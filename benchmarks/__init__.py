"""Speed and memory benchmarks; each writes JSON + Markdown through `benchmarks.harness`."""
