"""Detector comparison: does synthetic metal help the detector, and by how much?

- `base`: the `Detector` interface (train on a YOLO-layout set, predict COCO results) and
  `make_detector`; `yolo`: the ultralytics backend (AGPL-3.0); `offline`: keeps it offline.
- `arms`: each arm's training set under one images-per-epoch budget (real B oversampled).
- `evaluate`: pycocotools COCOeval — mAP, AP50/75, APs/m/l, per-class AP, PR curves.
- `stats`: mean ± std over seeds; paired bootstrap over test images by re-weighting one COCOeval.
- `compare`: `compare()` runs arms x seeds in separate processes and writes metrics.json.
"""
