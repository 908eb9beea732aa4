"""The multi-task model: backbones, ARM, attribute heads, BNNeck embedding, and the losses that train it."""
