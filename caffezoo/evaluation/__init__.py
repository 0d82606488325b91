"""Accuracy and speed of Caffe classifiers (docs/evaluation.md, docs/benchmarks.md).

- dataset: the val list, label mapping, image decoding (with corrupt-image detection)
- preprocess: resizing, normalisation and the 1/10/12/144-crop schemes of the original
- classify: the loop (decoding workers beside real batches) and its results
- report: JSON, the original's log wording, per-image CSV
- plots: accuracy against crop size
- timing: `caffe time`, forward-only timing, the machine's fp32 limit, random weights
"""
