"""caffezoo: generate, convert and verify Caffe image classifiers."""

__version__ = "0.1.0"
