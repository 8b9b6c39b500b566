"""Detector arms (YOLO backend behind a small interface), COCO evaluation with pycocotools, and statistics (seeds, paired bootstrap)."""
