"""Source-framework model definitions that no package installs (not source kinds: those are
caffezoo/converters/): TF-slim's Inception-v4 and Inception-ResNet-v2 (`inception_v4.py`,
`inception_resnet_v2.py`), written to produce exactly the variable names and shapes of the
released checkpoints, the TF-slim argument scopes (`slim_scopes.py`) the TF-slim source kind
builds every net with, and the real EfficientNet-Lite0 weights as a timm checkpoint
(`efficientnet_lite0.py`, the demo's model)."""
