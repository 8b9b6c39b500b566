"""Synthetic metal images: translate labelled A, carry boxes through one affine map per image, gate on quality, export an augmented COCO/YOLO dataset."""
