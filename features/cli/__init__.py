"""The binaries of the features package: acp-baseline-train, acp-extract, acp-import-features."""
