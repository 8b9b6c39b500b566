"""Metalize: synthetic metal images from 3D-printed replicas for object detection.

Pure library, no Prefect: `config` (one typed run config), `store` (hashing, atomic writes,
manifests, locks), `data` (formats, validation, splits, ingest, demo renderer), `gan`
(CycleGAN networks, losses, training, translation, quality), `synth` (synthetic images with
transferred boxes, quality gate, export), `detect` (YOLO arms, COCO evaluation, statistics),
`report` (HTML/Markdown/plots) and `cli`.
"""

__version__ = "0.1.0"

# OpenMP's wait policy is left to the user: a single torch process runs fastest with the default
# (measured on the 2-core reference machine, 64² CycleGAN step bf16: 0.087 s unset/ACTIVE vs
# 0.20 s PASSIVE). Only processes that share the cores (YOLO arms side by side) get PASSIVE, set
# for those children alone (pipeline.detect.compare.shared_core_env).
