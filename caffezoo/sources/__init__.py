"""Source-framework model definitions that no package installs: TF-slim's Inception-v4 and
Inception-ResNet-v2 (`inception_v4.py`, `inception_resnet_v2.py`), written to produce exactly
the variable names and shapes of the released checkpoints, and the TF-slim argument scopes
(`slim_scopes.py`) the TF-slim source kind builds every net with."""
