"""Re-ID features for the re-rankers: the baseline feature extractor (ResNet-50 BoT: `backbone`, `head`, `losses`,
`sampler`, `recipe`, `training`), `extraction` of feature files, the feature-file format (`feature_file`) and the
`importers` of other toolkits' features. Binaries in `features.cli`."""

import data  # noqa: F401  (first: sets TensorFlow's load-time defaults before anything loads it)
