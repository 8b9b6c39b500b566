"""Annotated image sets: the COCO data model (`coco`), readers and writers for COCO, YOLO and
labelme (`formats`), image and box validation with a quarantine (`validate`), deterministic
content-hash splits (`split`), dataset versions on disk (`version`), the ingest stage (`ingest`),
dataset cards (`card`) and the procedural replica/metal demo renderer (`demo`)."""
