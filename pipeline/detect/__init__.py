"""Detector comparison: does synthetic metal help the detector, and by how much?

- `base`: the `Detector` interface (train on a YOLO-layout set, predict COCO results);
  `backends`: `make_detector` picks one by name; `yolo`: the ultralytics backend (AGPL-3.0); `offline`: keeps it offline.
- `arms`: each arm's training set under one images-per-epoch budget (real B oversampled).
- `evaluate`: pycocotools COCOeval — mAP, AP50/75, APs/m/l, per-class AP, PR curves.
- `stats`: mean ± std over seeds; paired bootstrap over test images by re-weighting one COCOeval.
- `runs`: one arm x seed (train, predict, evaluate) in its own spawned process; crashes -> records.
- `compare`: `compare()` plans arms x seeds, runs them, summarises and writes metrics.json.
"""
