"""CycleGAN: networks, losses, image pool, training, checkpoints, tiled translation and offline quality metrics. Imports torch only (no Prefect, no ultralytics)."""
