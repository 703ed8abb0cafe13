"""Networks and what trains or stores them: blocks, the targeted embedder, the responsibility mix,
the SPADE generator, the discriminators, losses, VGG features and safetensors checkpoints.

Depends on caingan's core modules (config, errors, device) only; knows nothing of files, photos or Qt.
"""
