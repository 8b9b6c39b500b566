"""Metalize: synthetic metal images from 3D-printed replicas for object detection.

Pure library, no Prefect: `config` (one typed run config), `store` (hashing, atomic writes,
manifests, locks), `data` (formats, validation, splits, ingest, demo renderer), `gan`
(CycleGAN networks, losses, training, translation, quality), `synth` (synthetic images with
transferred boxes, quality gate, export), `detect` (YOLO arms, COCO evaluation, statistics),
`report` (HTML/Markdown/plots) and `cli`.
"""

__version__ = "0.1.0"
