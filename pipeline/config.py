"""One typed configuration for a whole Metalize run.

`load_config("configs/demo.yaml", ["gan.iterations=50"])` reads YAML with `yaml.safe_load`,
applies `section.key=value` overrides (values parsed as YAML scalars) and validates everything
with pydantic. Unknown keys are errors that name their dotted path and the closest valid key.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.detect.arm_specs import ARMS
from pipeline.gan import TRANSLATORS


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key and the problem."""


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, values are re-validated on set."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


# ----------------------------------------------------------------------------------------- runtime
class RuntimeConfig(Section):
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    seed: int = 0
    workers: int = Field(2, ge=0, description="worker processes/threads for I/O-bound stages")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; None = all cores")
    output_root: Path = Field(Path("."), description="data/, models/ and reports/ live under it")

    @property
    def data_dir(self) -> Path:
        return self.output_root / "data"

    @property
    def models_dir(self) -> Path:
        return self.output_root / "models"

    @property
    def reports_dir(self) -> Path:
        return self.output_root / "reports"


# -------------------------------------------------------------------------------------------- data
class DemoDataConfig(Section):
    """Sizes of the procedurally rendered replica (A) / metal (B) demo set."""

    image_size: int = Field(128, ge=32, le=2048, description="square image side, pixels")
    n_a: int = Field(120, ge=1, description="labelled Class A (replica) photos")
    n_b_train: int = Field(10, ge=1, description="labelled real B for training (scarce)")
    n_b_val: int = Field(30, ge=1)
    n_b_test: int = Field(150, ge=1)
    n_b_unlabelled: int = Field(200, ge=0, description="unlabelled B pool for the CycleGAN")
    n_b_oracle: int = Field(120, ge=0, description="extra labelled B for the oracle arm")
    parts_per_image: tuple[int, int] = Field((2, 5), description="min, max parts drawn per photo")
    clutter_per_image: tuple[int, int] = Field((0, 3), description="min, max non-part distractors")
    hard_fraction: float = Field(0.2, ge=0, le=1, description="share of low-contrast/over-exposed")
    min_visibility: float = Field(0.35, ge=0, le=1, description="drop parts less visible")

    @field_validator("parts_per_image", "clutter_per_image")
    @classmethod
    def _range(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[0] < 0 or v[0] > v[1]:
            raise ValueError(f"expected 0 <= min <= max, got {list(v)}")
        return v


class SourceConfig(Section):
    """One folder of photos and (optionally) their box annotations."""

    images: Path
    annotations: Path | None = Field(
        None, description="COCO JSON file, labelme folder or YOLO labels folder; None = unlabelled"
    )
    format: Literal["coco", "yolo", "labelme", "none"] = "coco"
    names: list[str] | None = Field(None, description="YOLO class names (or a classes.txt path)")
    split: Literal["train", "val", "test", "unlabelled", "oracle"] | None = Field(
        None, description="put every image of this source in this split (e.g. a held-out test set)"
    )
    split_file: Path | None = Field(
        None, description="explicit split, e.g. BSData image_data.json (file -> train/test)"
    )


class SplitConfig(Section):
    """Fractions for B labelled photos; the rest of the data is assigned deterministically."""

    train: float = Field(0.2, ge=0, le=1)
    val: float = Field(0.2, ge=0, le=1)
    test: float = Field(0.6, ge=0, le=1)
    use_source_split: bool = Field(False, description="honour SourceConfig.split_file")
    val_from_source_train: float = Field(
        0.2, ge=0, lt=1,
        description="with use_source_split: share of the split file's train images moved to val "
        "(deterministic by content hash); its test images are kept exactly",
    )

    @model_validator(mode="after")
    def _sum_to_one(self) -> "SplitConfig":
        if abs(self.train + self.val + self.test - 1.0) > 1e-6:
            raise ValueError(f"train+val+test must sum to 1, got {self.train + self.val + self.test}")
        return self


class DataConfig(Section):
    name: str = Field("demo", pattern=r"^[A-Za-z0-9_.-]+$")
    source: Literal["demo", "folders"] = "demo"
    demo: DemoDataConfig = DemoDataConfig()
    a: list[SourceConfig] = Field(default_factory=list, description="Class A (replica) sources")
    b: list[SourceConfig] = Field(default_factory=list, description="Class B (metal) sources")
    categories: list[str] | None = Field(None, description="category names in order; None = union")
    category_map: dict[str, str] = Field(default_factory=dict, description="source name -> name")
    split: SplitConfig = SplitConfig()
    max_pixels: int = Field(50_000_000, ge=1, description="larger images are quarantined (bombs)")
    min_image_side: int = Field(8, ge=1, description="images narrower or shorter than this (px) are "
                                "quarantined: too small to hold a part")
    min_box_size: float = Field(1.0, gt=0, description="boxes thinner than this (px) are dropped")
    max_boxes_per_image: int = Field(1000, ge=1, description="an image annotated with more boxes is "
                                     "quarantined (machine-made garbage, not a photo's parts)")
    max_annotation_mb: float = Field(1024, gt=0, description="larger annotation files (COCO/labelme JSON, "
                                     "YOLO txt) are refused before they are read")
    clip_min_inside: float = Field(
        0.5, ge=0, le=1, description="clip boxes at least this much inside, else drop"
    )
    strict: bool = Field(False, description="fail on the first bad input instead of quarantining")
    shard_size: int = Field(256, ge=1, description="images per validation task")
    dask: bool = Field(False, description="Prefect flow: validate shards on a local Dask cluster")


# --------------------------------------------------------------------------------------------- gan
class GanConfig(Section):
    """Translator hyper-parameters: CycleGAN (Zhu et al. 2017, the default; defaults follow the
    paper) or CUT / FastCUT (Park et al. 2020: one generator, PatchNCE, no inverse network)."""

    model: Literal[tuple(TRANSLATORS)] = Field(  # type: ignore[valid-type]
        "cyclegan", description=" | ".join(f"{k} ({v[1]})" for k, v in TRANSLATORS.items()))
    load_size: int = Field(286, ge=16, description="resize the short side to this before cropping")
    crop_size: int = Field(256, ge=16)
    ngf: int = Field(64, ge=4)
    ndf: int = Field(64, ge=4)
    n_blocks: int = Field(9, ge=1)
    n_layers_d: int = Field(3, ge=1)
    upsample: Literal["transpose", "resize"] = Field(
        "transpose", description="generator upsampling: the paper's transposed convolutions, or nearest "
        "resize + 3x3 convolution (no checkerboard)")
    gan_mode: Literal["lsgan", "vanilla", "wgangp", "hinge"] = "lsgan"
    lambda_cycle: float = Field(10.0, ge=0)
    lambda_identity: float = Field(0.5, ge=0, description="times lambda_cycle")
    lambda_gp: float = Field(10.0, ge=0, description="gradient penalty weight (wgangp)")
    lambda_structure: float = Field(0.0, ge=0, description="A->B structure term: 1 - gradient SSIM of A and G(A) "
                                    "(outlines kept whatever the colour); 0 = off")
    structure_box_weight: float = Field(4.0, ge=1, description="the structure term counts this many times "
                                        "more inside the replica's boxes than elsewhere")
    lambda_nce: float | None = Field(None, ge=0, description="CUT/FastCUT PatchNCE weight; None = 1 (cut), 10 (fastcut)")
    nce_patches: int = Field(256, ge=8, description="CUT/FastCUT: patches sampled per layer and image")
    nce_tau: float = Field(0.07, gt=0, description="CUT/FastCUT: PatchNCE temperature")
    pool_size: int = Field(50, ge=0)
    lr: float = Field(2e-4, gt=0)
    beta1: float = Field(0.5, ge=0, lt=1)
    batch_size: int = Field(1, ge=1)
    seed: int | None = Field(None, description="initial weights, crops and image pool; None = runtime.seed "
                             "(the efficacy benchmark trains several GAN seeds on one dataset version)")
    iterations: int = Field(200_000, ge=1, description="total optimisation steps")
    decay_from: float = Field(0.5, ge=0, le=1, description="fraction of steps at constant lr")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on CUDA and on CPUs with AMX/AVX512-BF16, else fp32 (pipeline/gan/accel.py)"
    )
    channels_last: Literal["auto"] | bool = Field("auto", description="auto: on CUDA only (slower on CPU)")
    compile: bool = Field(False, description="torch.compile each network (CUDA: kernels cached under "
                          "<output_root>/cache/torchinductor, so a rerun skips most of the compile)")
    cuda_graphs: Literal["auto"] | bool = Field(
        "auto", description="capture the whole training step as a CUDA graph; auto: on for one CUDA process "
        "in bf16/fp32 without wgangp (pipeline/gan/graphs.py)"
    )
    object_aware_crops: bool = False
    num_workers: int = Field(2, ge=0)
    checkpoint_every: int = Field(1000, ge=1)
    log_every: int = Field(50, ge=1)
    image_every: int = Field(1000, ge=1)
    tile: int = Field(512, ge=32, description="translation tile side, pixels")
    tile_overlap: int | None = Field(
        None, ge=0, description="tile overlap, pixels; None = half the generator's receptive field (64 px at 6 blocks)"
    )
    translate_batch: Literal["auto"] | Annotated[int, Field(ge=1)] = Field(
        "auto", description="images or tiles per generator pass; auto: 1 on CPU (larger batches cost more "
        "CPU time there), 8 on CUDA (pipeline/gan/accel.py, bench/translate_batch.py)")
    translate_size: Literal["train", "native"] | Annotated[int, Field(ge=16)] = Field(
        "train", description="translate at the training scale (short side = load_size), the photo's own "
        "resolution (native; tiled when larger than the tile), or this short side in pixels"
    )
    translate_border: int = Field(
        8, ge=0, multiple_of=4, description="px of reflection around each image or tile, cut off after the "
        "generator: its stride-2 convolutions zero-pad the top and left edges, where it draws noise "
        "(pipeline/gan/translate.py); a multiple of 4, 0 = none")
    deterministic: bool = Field(True, description="CPU: torch deterministic algorithms during training")
    quality_images: int = Field(64, ge=4, description="A and real B photos for the quality metrics")
    quality_steps: int = Field(150, ge=1, description="training steps of the two-sample test's critics")
    realism_steps: int | None = Field(
        None, ge=0, description="steps of the realism critic saved for the synthesis gate "
        "(realism_critic.safetensors); None = 2 × quality_steps, 0 = no critic"
    )
    inception_weights: Path | None = Field(
        None, description="local Inception-v3 weights (.safetensors/.pth) for FID/KID; None = skip"
    )


# ------------------------------------------------------------------------------------------- synth
class GateConfig(Section):
    """Quality-gate thresholds (pipeline/synth/gate.py).

    Defaults measured by bench/gate_thresholds.py on the demo data (120 A images, 422 boxes >= 8 px)
    with the demo profile's 2000-step CycleGAN; real B references from B val + unlabelled, never B
    test (bench/results/gate_thresholds.json, tables in pipeline/synth/README.md). Boxes dropped,
    generator output vs broken copies of it: edge F1 < 0.3 alone 18 % of good, 82 % blurred, 67 %
    erased, 35 % moved by 30 % of the box; with the offset check (> 0.15 of the side, >= 3 px,
    gain >= 0.2) 20 % of good, 78 % erased, 79-83 % moved by 20-30 %, 77 % moved 6 px diagonally.
    Per image: real B saturate <= 13 % of pixels (p99), a x3 gain is caught in 89 % at 0.1;
    grey std >= 18 for real B and generator output; checkerboard share <= 0.15 (generator p99) vs
    0.19-0.84 with a +-8 grey-level stride-2 pattern; seam > 10 flags 3 % of generator outputs and
    76 % of 15-grey-level steps.
    """

    box_metric: Literal["edge_f1", "gradient_ssim", "both"] = Field(
        "edge_f1", description="per-box structure score(s) compared against the thresholds"
    )
    min_box_edge_f1: float = Field(0.3, ge=0, le=1, description="per-box edge F1, A crop vs synthetic crop")
    min_box_gradient_ssim: float = Field(0.02, ge=0, le=1, description="used with box_metric gradient_ssim/both")
    box_margin: float = Field(0.1, ge=0, le=1, description="crop grows by this share of the box side")
    min_box_side: float = Field(8.0, ge=0, description="smaller boxes (px) are not scored")
    box_rule: Literal["drop_box", "reject_image"] = "drop_box"
    max_dropped_fraction: float = Field(0.5, ge=0, le=1, description="more dropped -> reject image")
    max_saturated_fraction: float = Field(0.1, ge=0, le=1, description="share of blown-out/crushed pixels")
    min_std: float = Field(4.0, ge=0, description="near-constant output (8-bit units)")
    max_checkerboard: float = Field(0.25, ge=0, le=1, description="share of HF energy on stride-2/4 bins")
    max_seam: float | None = Field(10.0, ge=0, description="straight row/column step not in the source, "
                                   "8-bit units (tiling seams); None = off")
    max_box_offset: float | None = Field(0.15, ge=0, description="part displacement / box side; None = off")
    min_box_offset_px: float = Field(3.0, ge=0, description="smaller displacements (px) never count")
    min_box_offset_gain: float = Field(0.2, ge=0, le=2, description="the part must match this much better "
                                       "(correlation) where it went than in place, for the offset to count")
    box_offset_search: float = Field(0.5, gt=0, le=2, description="offset search radius / box side")
    min_realism: float | None = Field(None, ge=0, le=1, description="min P(real metal) from the model's "
                                      "realism critic; None = off (scores are recorded when a critic exists)")
    erase_dropped: bool = Field(False, description="paint over the part of every dropped box (inpainting "
                                "of the box minus kept boxes): a faded or moved part is neither a label "
                                "nor an unlabelled part-like shape the detector learns as background")


class SynthConfig(Section):
    """Synthetic B from labelled A (pipeline/synth/): geometry, variants, balancing, augmentation."""

    variants: int = Field(1, ge=1, description="translations per labelled A image and generator")
    checkpoints: list[str] = Field(default_factory=list, description="extra generator checkpoints")
    fit: Literal["keep", "resize", "letterbox"] = Field("keep", description="bring A to image_size")
    image_size: int | None = Field(None, ge=16, description="working side, pixels (fit resize/letterbox)")
    tile: int | None = Field(None, ge=16, description="cut larger outputs into tiles of this side")
    tile_overlap: int = Field(0, ge=0)
    jitter: float = Field(0.25, ge=0, le=1, description="max log-zoom (crop) of variants after the first")
    pad_value: int = Field(0, ge=0, le=255, description="grey level of letterbox/crop padding")
    balance_classes: bool = False
    target_distribution: dict[str, float] | None = Field(None, description="None = uniform")
    max_balance_factor: float = Field(2.0, ge=1, description="balancing adds at most this x images")
    max_variants_per_image: int = Field(4, ge=1, description="cap on balancing variants per A image")
    augment: bool = False
    camera_match: bool = Field(False, description="give each synthetic image the vignette, bed and highlight levels "
                               "and noise of one real B photo (B_train + B_unlabelled; synth/camera.py)")
    min_visibility: float = Field(0.3, ge=0, le=1)
    min_area: float = Field(4.0, ge=0)
    gate: GateConfig = GateConfig()
    # Run-only settings (not in the cache key: they change how the work is done, not its pixels).
    shard_size: int = Field(64, ge=1, description="work items per shard (a resumed run keeps its own)")
    dask: bool = False
    prefetch: bool = Field(True, description="translate the next batch while checking/writing this one")
    n_card_examples: int = Field(8, ge=0, description="A | synthetic pairs and rejects in the card")


# ------------------------------------------------------------------------------------------ detect
Arm = Literal[ARMS]  # the arms of pipeline/detect/arm_specs.py


class DetectConfig(Section):
    backend: Literal["yolo"] = "yolo"
    model: str = Field("yolo11n.yaml", description="ultralytics model YAML (trained from scratch)")
    weights: Path | None = Field(None, description="optional local .pt weights to start from")
    arms: list[Arm] = list(ARMS)
    seeds: list[int] = [0, 1, 2]
    epochs: int = Field(100, ge=1)
    imgsz: int = Field(640, ge=32)
    batch: int = Field(16, ge=1)
    images_per_epoch: int | None = Field(None, ge=1, description="equal budget; None = largest arm")
    real_oversample: int = Field(3, ge=1, description="repeat real B in mixed arms")
    replica_aug_variants: int = Field(1, ge=1, description="real+replica-aug: randomised copies per replica "
                                      "photo (drawn anew for every detector seed)")
    real_finetune_epochs: int = Field(0, ge=0, description="the arms that add replica or synthetic images "
                                      "train their last N epochs on real B alone (the same images per epoch, "
                                      "the learning rate decaying on); 0 = off")
    pretrain_fraction: float = Field(0.5, gt=0, lt=1, description="synthetic->real: share of the epochs spent "
                                     "pre-training on the synthetic images before fine-tuning on real B")
    synthetic_keep: float = Field(1.0, gt=0, le=1, description="share of the accepted synthetic images the arms "
                                  "train on, the most realistic first (the realism critic's P(real metal) "
                                  "recorded by the gate); 1 = all")
    parallel_arms: int = Field(1, ge=1, description="arms trained side by side (CPU)")
    baselines_ahead: Literal["auto"] | bool = Field(
        "auto", description="train the arms that use no synthetic image while the GAN trains, one at a time on "
        "a run's share of the cores (the GAN gets the rest); needs a fixed images_per_epoch and parallel_arms "
        ">= 2. auto = when the detector trains on CPU (the GAN's batch-1 step barely uses a second core)")
    conf: float = Field(0.001, gt=0, lt=1)
    bootstrap_resamples: int = Field(1000, ge=10)
    patience: int = Field(0, ge=0, description="early stopping; 0 = off (same budget per arm)")
    workers: int = Field(0, ge=0, description="dataloader workers per arm (0 = in the trainer)")
    max_det: int = Field(100, ge=1, description="detections kept per test image (COCO maxDets)")
    nms_iou: float = Field(0.7, gt=0, lt=1, description="NMS IoU threshold at prediction")
    amp: Literal["auto", "off"] = Field(
        "auto", description="auto = bf16 autocast on CUDA and on CPUs with native bf16 matrix units (AMX, "
        "AVX512-BF16; the loss stays fp32), else fp32; off = fp32 (pipeline/detect/offline.py)")
    crosscheck_tolerance: float = Field(0.05, ge=0, le=1, description="warn when ultralytics' own test mAP "
                                        "differs from pycocotools' by more than this")
    extra_args: dict[str, Any] = Field(default_factory=dict, description="passed to YOLO.train")

    @model_validator(mode="after")
    def _finetune_within_epochs(self) -> "DetectConfig":
        if self.real_finetune_epochs >= self.epochs:
            raise ValueError(f"real_finetune_epochs ({self.real_finetune_epochs}) must be below epochs "
                             f"({self.epochs}): the arm's own images need at least one epoch")
        return self

    def keyed(self) -> dict[str, Any]:
        """This section as cache keys read it: `baselines_ahead` and `parallel_arms` decide when and
        beside what runs train, never what they produce; `real_finetune_epochs` is keyed only when
        on (runs trained before it existed are the runs with it off)."""
        d = self.model_dump(mode="json", exclude={"baselines_ahead", "parallel_arms"})
        if not d["real_finetune_epochs"]:
            d.pop("real_finetune_epochs")
        return d


# ------------------------------------------------------------------------------------------ report
class ReportConfig(Section):
    title: str = "Does synthetic metal help the detector?"
    n_detection_samples: int = Field(6, ge=0)
    n_synthetic_samples: int = Field(12, ge=0)
    alpha: float = Field(0.05, gt=0, lt=1, description="CI level = 1 - alpha")
    min_test_images: int = Field(30, ge=1, description="fewer real B test photos: no verdict (and a pre-flight "
                                 "error before training)")
    min_test_boxes: int = Field(50, ge=1, description="fewer boxes in the B test split: likewise")
    min_map: float = Field(0.01, ge=0, le=1, description="when every arm scores below this mAP the verdict is "
                           "inconclusive (nothing was learnt)")
    detection_threshold: float = Field(0.25, gt=0, lt=1, description="min score of boxes drawn in samples")
    dpi: int = Field(110, ge=50, le=300, description="resolution of the report's figures")


# --------------------------------------------------------------------------------------------- run
class RunConfig(Section):
    profile: str = "custom"
    runtime: RuntimeConfig = RuntimeConfig()
    data: DataConfig = DataConfig()
    gan: GanConfig = GanConfig()
    synth: SynthConfig = SynthConfig()
    detect: DetectConfig = DetectConfig()
    report: ReportConfig = ReportConfig()

    @field_validator("profile")
    @classmethod
    def _plain(cls, v: str) -> str:
        return v.strip() or "custom"

    @model_validator(mode="after")
    def _outputs_outside_inputs(self) -> "RunConfig":
        problem = output_root_problem(self)
        if problem:
            raise ValueError(problem)
        return self

    def section_hash(self, name: str) -> str:
        """sha256 of one section's canonical JSON: the cache key part that config contributes."""
        return _hash_json(getattr(self, name).model_dump(mode="json"))

    def hash(self) -> str:
        return _hash_json(self.model_dump(mode="json"))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def output_root_problem(cfg: RunConfig) -> str | None:
    """Why runtime.output_root may not be used with these sources (None: it may).

    An output root inside an input folder (a source's images, or its annotations folder) would
    write dataset versions, models and reports into the user's photos, and a later ingest would
    read them back as inputs. Paths are compared resolved (symlinks, relative to the working
    directory), as ingest opens them. The demo's sources live under the output root: not checked.
    """
    if cfg.data.source != "folders":
        return None
    out = _real(cfg.runtime.output_root)
    for domain, sources in (("a", cfg.data.a), ("b", cfg.data.b)):
        for i, src in enumerate(sources):
            folders = [("images", src.images)]
            if src.annotations is not None and src.format in ("yolo", "labelme"):
                folders.append(("annotations", src.annotations))
            for key, folder in folders:
                if out.is_relative_to(_real(folder)):
                    where = f"data.{domain}[{i}].{key} {folder}"
                    return (f"runtime.output_root {cfg.runtime.output_root} is inside {where}: outputs "
                            "would be written into your inputs; choose an output root outside every "
                            "input folder")
    return None


def _real(p: Path) -> Path:
    return Path(os.path.realpath(os.path.abspath(p)))


def _hash_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# ----------------------------------------------------------------------------------------- loading
def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a profile YAML (or defaults when `path` is None) and apply `a.b=value` overrides.

    Relative paths written in the file are relative to the file's folder (a config works from any
    working directory); relative paths in overrides are relative to the working directory, as
    on any command line. Every path of the returned config is absolute (`~` expanded), so a
    config saved beside an output (`config.yaml`) means the same when loaded from anywhere.
    """
    raw: dict[str, Any] = {}
    where = "defaults"
    if path is not None:
        p = Path(path)
        where = str(p)
        raw = read_config_file(p)
        _rebase_paths(raw, RunConfig, Path(os.path.abspath(p)).parent)
    applied = {_apply_override(raw, item): item for item in overrides or []}
    cfg = validate_config(raw, where, applied)
    _absolute_paths(cfg)
    return cfg


def read_config_file(p: Path) -> dict[str, Any]:
    """The mapping in a YAML config file, or ConfigError naming the file: missing, a folder, empty,
    only comments, not UTF-8, not YAML, a key given twice, or a top level that is no mapping."""
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder, not a config file")
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror or e}") from None
    if not data.strip():
        raise ConfigError(f"{p}: config file is empty (start from configs/demo.yaml or pass no file for "
                          "the defaults)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); save it "
                          "as UTF-8") from None
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {_yaml_problem(e)}") from None
    except RecursionError:
        raise ConfigError(f"{p}: not valid YAML: nested too deeply") from None
    if raw is None:
        raise ConfigError(f"{p}: holds no settings (only comments or blank lines)")
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: top level must be a mapping, got {type(raw).__name__}")
    return raw


def _yaml_problem(e: yaml.YAMLError) -> str:
    """`line 3, column 1: key 'gan' given twice` from a PyYAML error (its own text spans lines)."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    context = getattr(e, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    text = f"{where}{problem}" + (f" ({context})" if context else "")
    return " ".join(text.split())


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (SafeLoader keeps the last:
    `gan: {iterations: 5}` further down would silently win over the first `gan:` section)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # an unhashable key: SafeLoader reports it below
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice",
                                                    key_node.start_mark)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

# Fields holding paths as plain strings (next to every Path-typed field): SourceConfig.names when
# it names a classes.txt/data.yaml, SynthConfig.checkpoints.
_NAME_FILES = (".txt", ".yaml", ".yml")


def _is_path_type(annotation: Any) -> bool:
    return annotation is Path or Path in (getattr(annotation, "__args__", ()) or ())


def _join(base: Path, value: str) -> str:
    v = os.path.expanduser(value)
    return v if os.path.isabs(v) else os.path.normpath(os.path.join(base, v))


def _rebase_paths(node: Any, model: type[BaseModel], base: Path) -> None:
    """Make the relative paths of a raw config mapping relative to `base` (in place)."""
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        field = model.model_fields.get(key) if isinstance(key, str) else None
        if field is None or value is None:
            continue
        sub = _model_of(field.annotation)
        if sub is not None:
            for item in value if isinstance(value, list) else [value]:
                _rebase_paths(item, sub, base)
        elif _is_path_type(field.annotation) and isinstance(value, str):
            node[key] = _join(base, value)
        elif (model, key) == (SynthConfig, "checkpoints") and isinstance(value, list):
            node[key] = [_join(base, v) if isinstance(v, str) else v for v in value]
        elif (model, key) == (SourceConfig, "names") and isinstance(value, list) and len(value) == 1 \
                and isinstance(value[0], str) and value[0].endswith(_NAME_FILES):
            node[key] = [_join(base, value[0])]


def _absolute_paths(section: BaseModel) -> None:
    """Every Path field of a validated config made absolute (relative to the working directory)."""
    for name, field in type(section).model_fields.items():
        value = getattr(section, name)
        if isinstance(value, BaseModel):
            _absolute_paths(value)
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            for item in value:
                _absolute_paths(item)
        elif isinstance(value, Path) and not value.is_absolute():
            setattr(section, name, Path(os.path.abspath(os.path.expanduser(value))))


def validate_config(raw: dict[str, Any], where: str = "config",
                    overrides: dict[tuple[str, ...], str] | None = None) -> RunConfig:
    """RunConfig from a raw mapping. Each error is prefixed with where it came from: the
    override that set the key (`overrides`: key path -> "a.b=value" as typed), else `where`."""
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        parts = [f"{_origin(err['loc'], where, overrides or {})}: {_explain(err)}" for err in e.errors()]
        raise ConfigError("; ".join(parts)) from None


def _origin(loc: tuple[Any, ...], where: str, overrides: dict[tuple[str, ...], str]) -> str:
    """The override responsible for an error at `loc`: the one setting that key, a key below it
    (a section-level check such as split fractions) or a section above it; else `where`."""
    path = tuple(str(p) for p in loc)
    for key, item in reversed(overrides.items()):  # the last override of a key is the one that counts
        n = min(len(key), len(path))
        if n and key[:n] == path[:n]:
            return f"override '{item}'"
    return where


def _apply_override(raw: dict[str, Any], item: str) -> tuple[str, ...]:
    """Set raw[a][b] = value for "a.b=value"; returns the key path."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r}: expected section.key=value")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {item!r}: {part} is not a section")
        node = nxt
    try:
        node[parts[-1]] = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        node[parts[-1]] = value
    return tuple(parts)


def _explain(err: dict[str, Any]) -> str:
    loc = [str(p) for p in err["loc"]]
    dotted = ".".join(loc)
    if err["type"] == "extra_forbidden":
        hint = _closest_key(err["loc"])
        return f"unknown key '{dotted}'" + (f" (did you mean '{hint}'?)" if hint else "")
    if not loc:  # a check across sections: its message names the keys, the input is the whole config
        return str(err["msg"]).removeprefix("Value error, ")
    return f"'{dotted}': {err['msg']} (got {err.get('input')!r})"


def _closest_key(loc: tuple[Any, ...]) -> str | None:
    model: type[BaseModel] = RunConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        sub = _model_of(field.annotation)
        if sub is None:
            return None
        model = sub
    match = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.5)
    if not match:
        return None
    prefix = [str(p) for p in loc[:-1]]
    return ".".join(prefix + [match[0]])


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    return None
