"""The data binaries: reid-synthetic (`synthetic`). They run without TensorFlow, so nothing is loaded here."""
