"""Table configurations of both papers, the runner that regenerates them, the demo and figures."""
