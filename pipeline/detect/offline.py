"""Keep ultralytics from touching the network: no hub weights, fonts, AMP-check model, pip installs
or telemetry.

Ultralytics decides much of this at import time (`ONLINE`, `AUTOINSTALL`, the settings file under
`$YOLO_CONFIG_DIR`), so `ensure_offline()` must run before the first `import ultralytics` in a
process; when ultralytics is already imported it patches the module-level flags it reads instead.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

# Settings that make ultralytics phone home or import optional loggers that may.
_OFFLINE_SETTINGS = {
    "sync": False,  # anonymous usage events and crash reports
    "api_key": "",
    "clearml": False,
    "comet": False,
    "dvc": False,
    "mlflow": False,
    "raytune": False,
    "tensorboard": False,
    "wandb": False,
    "vscode_msg": False,
    "openvino_msg": False,
}
# Plot labels need these; ultralytics downloads them from its asset server when missing.
_FONTS = ("Arial.ttf", "Arial.Unicode.ttf")


def ensure_offline(config_dir: str | Path | None = None) -> Path:
    """Make this process's ultralytics fully offline; returns $YOLO_CONFIG_DIR (ultralytics keeps
    its settings and fonts in the Ultralytics/ folder inside it).

    `config_dir` wins over `$YOLO_CONFIG_DIR`; with neither, a private dir under the system temp
    dir is used so the user's own ~/.config/Ultralytics settings are never rewritten.
    """
    if config_dir is not None:
        os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    elif not os.environ.get("YOLO_CONFIG_DIR"):
        os.environ["YOLO_CONFIG_DIR"] = str(Path(os.environ.get("TMPDIR", "/tmp")) / "metalize-ultralytics")
    cdir = Path(os.environ["YOLO_CONFIG_DIR"])
    cdir.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_OFFLINE"] = "1"  # is_online() -> False without a DNS probe
    os.environ["YOLO_AUTOINSTALL"] = "false"  # never `pip install` a missing requirement

    already = "ultralytics" in sys.modules
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR  # reads settings, computes ONLINE

    # check_font() looks in USER_CONFIG_DIR ($YOLO_CONFIG_DIR/Ultralytics) and otherwise probes
    # the asset server even when offline, so the fonts must be there.
    _install_fonts(Path(USER_CONFIG_DIR))

    if any(SETTINGS.get(k) != v for k, v in _OFFLINE_SETTINGS.items()):
        SETTINGS.update(_OFFLINE_SETTINGS)
    if already:
        _patch_imported_flags()
    return cdir


def _install_fonts(cdir: Path) -> None:
    """Copy matplotlib's DejaVuSans.ttf under the names ultralytics' check_font looks for."""
    import matplotlib

    src = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in _FONTS:
        dst = cdir / name
        if not dst.exists():
            tmp = dst.with_suffix(f".{os.getpid()}.tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)  # atomic: parallel arms may race here


def _patch_imported_flags() -> None:
    """ultralytics was imported before us: flip the copies of ONLINE/AUTOINSTALL modules hold."""
    for name in ("ultralytics.utils", "ultralytics.utils.checks", "ultralytics.utils.downloads",
                 "ultralytics.utils.events", "ultralytics.hub.utils", "ultralytics.hub"):
        mod = sys.modules.get(name)
        if mod is None:
            continue
        if hasattr(mod, "ONLINE"):
            mod.ONLINE = False
        if hasattr(mod, "AUTOINSTALL"):
            mod.AUTOINSTALL = False
    events = sys.modules.get("ultralytics.utils.events")
    if events is not None and hasattr(events, "events"):
        events.events.enabled = False


def train_precision(device: str, mode: str = "auto") -> str:
    """"bf16" or "fp32": what the detector trains in. auto: bf16 on CUDA with bf16 support and on
    CPUs with native bf16 matrix units (AMX or AVX512-BF16, the GAN's rule: pipeline/gan/accel.py),
    else fp32; off: fp32."""
    if mode == "off":
        return "fp32"
    import torch

    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    from pipeline.gan.accel import cpu_has_fast_bf16

    return "bf16" if device == "cpu" and cpu_has_fast_bf16() else "fp32"


def amp_setting(device: str, mode: str = "auto") -> bool | str:
    """The `amp` argument for YOLO.train: bf16 autocast on CUDA (which skips ultralytics' AMP
    check, the step that downloads yolo26n.pt), False elsewhere: ultralytics has no CPU autocast
    (bf16 on the CPU is the trainer's own, pipeline/detect/yolo.py)."""
    return "bf16" if device.startswith("cuda") and train_precision(device, mode) == "bf16" else False
