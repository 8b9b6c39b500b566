"""Annotated image sets: the COCO data model (`coco`), readers and writers for COCO, YOLO and
labelme (`formats`), image and box validation with a quarantine (`validate`), deterministic
content-hash splits (`split`), dataset versions on disk (`version`), the ingest stage (`ingest`)
and dataset cards (`card`). The procedural demo set is rendered by `pipeline.demo`."""
