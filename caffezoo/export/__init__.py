"""Caffe -> ONNX and Caffe -> PyTorch: the reverse direction of caffezoo's converters, so that a
Caffe net runs (and is read, in Netron) outside Caffe with Caffe's exact semantics.

- `caffezoo.export.export_net`: what both exporters share: the TEST-phase net with its weights
  (`ExportNet`), the checks that refuse what cannot be exported exactly (`ConversionError` naming
  the layer and type), BatchNorm folding, pooling geometry with Caffe's rounding rules.
- `caffezoo.export.onnx`: `to_onnx(...) -> onnx.ModelProto`, `export_onnx(...)`.
- `caffezoo.export.torch`: `to_torch(...) -> nn.Module`, `save(...)`, `load(path)`.

docs/export.md describes the formats, options and the measured agreement with real Caffe.
"""
