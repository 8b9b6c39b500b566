"""How good is a CycleGAN, measured offline (no downloaded weights).

- realism (realism.py): a classifier two-sample test — a small CNN learns to tell real B from
  translated A; held-out accuracy with a Wilson 95% CI (0.5 = indistinguishable), KID and the
  diversity ratio (≪ 1 means mode collapse) on its features.
- structure: edge-map F1 and gradient SSIM between A and G(A), over the image and inside boxes.
- cycle: mean |A − F(G(A))| and |B − G(F(B))| in [0,1].
- FID/KID on Inception-v3 pool features when the user supplies local weights (`inception_weights`).
- the stage's realism critic (realism.py): `load_realism_scorer(model_dir)` -> P(real metal).
Images are uint8 RGB (H,W,3).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from torch import nn

from pipeline.gan.realism import (REALISM_CRITIC, Critic, kid, load_realism_scorer, mean_pairwise_distance,
                                   to_batch, train_realism_critic, two_sample_test, wilson_interval)
from pipeline.gan.translate import BORDER

if TYPE_CHECKING:
    from pipeline.data.version import DatasetVersion

__all__ = ["REALISM_CRITIC", "Critic", "box_structure", "edge_f1", "evaluate_quality", "fid",
           "fit_realism_critic", "gradient_ssim", "inception_features", "kid", "load_realism_scorer",
           "mean_pairwise_distance", "train_realism_critic", "two_sample_test", "wilson_interval"]


# ------------------------------------------------------------------------------------- structure
def _gray(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img


def _edges(gray: np.ndarray) -> np.ndarray:
    """Canny with thresholds from the median (so both domains get comparable edge maps)."""
    med = float(np.median(gray))
    lo, hi = int(max(0, 0.66 * med)), int(min(255, 1.33 * med))
    hi = max(hi, lo + 10)
    return cv2.Canny(cv2.GaussianBlur(gray, (3, 3), 0), lo, hi) > 0


def edge_map(img: np.ndarray) -> np.ndarray:
    """(H, W) bool edges of an RGB or grey image, as edge_f1 sees them."""
    return _edges(_gray(img))


def edge_f1(a: np.ndarray, b: np.ndarray, tolerance: int = 2) -> float:
    """F1 of b's edges against a's, an edge pixel counting as matched within `tolerance` px."""
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(f"edge_f1: shapes differ {a.shape} vs {b.shape}")
    ea, eb = _edges(_gray(a)), _edges(_gray(b))
    na, nb = int(ea.sum()), int(eb.sum())
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tolerance + 1, 2 * tolerance + 1))
    near_a = cv2.dilate(ea.astype(np.uint8), k) > 0
    near_b = cv2.dilate(eb.astype(np.uint8), k) > 0
    precision = float((eb & near_a).sum()) / nb
    recall = float((ea & near_b).sum()) / na
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def gradient_ssim(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> float:
    """SSIM of the Sobel gradient magnitudes (structure, not colour), clipped to [0,1]."""
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(f"gradient_ssim: shapes differ {a.shape} vs {b.shape}")

    def grad(img: np.ndarray) -> np.ndarray:
        g = _gray(img).astype(np.float32)
        return cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3))

    x, y = grad(a), grad(b)
    blur = lambda t: cv2.GaussianBlur(t, (0, 0), sigma)  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    L = max(float(max(x.max(), y.max())), 1.0)  # dynamic range of the gradient maps
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    ssim = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(np.clip(ssim.mean(), 0.0, 1.0))


def box_structure(a: np.ndarray, b: np.ndarray, boxes: list[list[float]], margin: float = 0.1,
                  min_side: float = 8.0) -> list[dict[str, float]]:
    """edge_f1 and gradient_ssim inside each xywh box (grown by `margin`); tiny boxes skipped."""
    h, w = a.shape[:2]
    out = []
    for x, y, bw, bh in boxes:
        if min(bw, bh) < min_side:
            continue
        mx, my = bw * margin, bh * margin
        x0, y0 = max(0, int(x - mx)), max(0, int(y - my))
        x1, y1 = min(w, int(math.ceil(x + bw + mx))), min(h, int(math.ceil(y + bh + my)))
        if x1 - x0 < 4 or y1 - y0 < 4:
            continue
        ca, cb = a[y0:y1, x0:x1], b[y0:y1, x0:x1]
        out.append({"edge_f1": edge_f1(ca, cb), "gradient_ssim": gradient_ssim(ca, cb)})
    return out


# -------------------------------------------------------------------------------------- inception
def inception_features(images: list[np.ndarray], weights: str | Path, device: str = "cpu",
                       batch: int = 16) -> np.ndarray:
    """(N,2048) Inception-v3 pool features from a local weights file (safetensors or plain .pth)."""
    from torchvision.models import inception_v3

    from pipeline.gan.checkpoint import CheckpointError, load_weights

    state = load_weights(weights)
    # torchvision's checkpoints carry the auxiliary classifier; accept files with or without it
    aux = any(k.startswith("AuxLogits.") for k in state)
    net = inception_v3(weights=None, aux_logits=aux, init_weights=False, transform_input=False)
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise CheckpointError(
            f"{weights}: not torchvision Inception-v3 weights — {len(missing)} missing keys "
            f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}), {len(unexpected)} unexpected "
            f"({', '.join(unexpected[:5])}{', ...' if len(unexpected) > 5 else ''})")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:  # right names, wrong shapes
        raise CheckpointError(f"{weights}: not torchvision Inception-v3 weights ({e})") from None
    net.fc = nn.Identity()
    net.eval().to(device)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch):
            x = to_batch(images[s:s + batch], 299).add(1).div(2)
            out.append(net(((x - mean) / std).to(device)).cpu().numpy())
    return np.concatenate(out)


def fid(f1: np.ndarray, f2: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two (N,d) feature sets.

    tr sqrt(S1·S2) is the nuclear norm of X1ᵀ-centred products: with S = XcᵀXc/(n−1),
    tr sqrt(S1 S2) = ‖X1c X2cᵀ‖_* / sqrt((n1−1)(n2−1)), an n1×n2 SVD instead of a d×d sqrtm
    (exact, and fast when n < d = 2048). With more samples than dimensions, symmetric
    eigendecompositions of the d×d covariances are used.
    """
    x1, x2 = f1.astype(np.float64), f2.astype(np.float64)
    mu1, mu2 = x1.mean(0), x2.mean(0)
    c1, c2 = x1 - mu1, x2 - mu2
    n1, n2 = len(x1) - 1, len(x2) - 1
    if min(len(x1), len(x2)) <= x1.shape[1]:
        tr_covmean = np.linalg.svd(c1 @ c2.T, compute_uv=False).sum() / np.sqrt(n1 * n2)
    else:
        s1, s2 = c1.T @ c1 / n1, c2.T @ c2 / n2
        w, v = np.linalg.eigh(s1)
        a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh(a @ s2 @ a), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + (c1 ** 2).sum() / n1 + (c2 ** 2).sum() / n2 - 2 * tr_covmean)


# ------------------------------------------------------------------------------------ evaluation
def _l1(x: list[np.ndarray], y: list[np.ndarray]) -> float:
    """Mean |x − y| over images, as a fraction of 255."""
    return float(np.mean([np.abs(a.astype(np.float32) - b.astype(np.float32)).mean() / 255
                          for a, b in zip(x, y)]))


def sample(items: list, n: int, rng: np.random.Generator) -> list:
    """Up to n of items, drawn without replacement, in their original order."""
    return [items[i] for i in sorted(rng.permutation(len(items))[:n])]


def reference_photos(dataset: "DatasetVersion", n: int, rng: np.random.Generator) -> tuple[list, str]:
    """The held-out real B photos a translation is judged against (B_val; B_unlabelled when there
    is none), up to n image records, and the split's name: "val" or "unlabelled"."""
    split = "val" if dataset.has("B", "val") else "unlabelled"
    return sample(dataset.coco("B", split).images, n, rng), split


def evaluate_quality(model_dir: str | Path, dataset: "DatasetVersion", *, n_images: int = 64, seed: int = 0,
                     device: str = "cpu", tile: int = 512, overlap: int | None = None, batch: int = 8,
                     border: int = BORDER, critic_steps: int = 150,
                     inception_weights: str | Path | None = None) -> dict[str, Any]:
    """All metrics above for a model directory, on up to n_images labelled A and real B photos.

    Real B are held-out photos (B_val; B_unlabelled when there is no B_val): evaluation only,
    nothing is trained on them here. The same realism test on the raw A photos is the baseline a
    useful generator must beat. cycle_l1 is A→B→A, cycle_l1_B is B→A→B (None for a translator
    without an inverse generator: CUT/FastCUT).
    """
    from pipeline.gan.translate import Translator

    rng = np.random.default_rng(seed)
    a_coco = dataset.coco("A", "train")
    a_recs = sample(a_coco.images, n_images, rng)
    by_image = a_coco.anns_by_image()
    b_recs, b_split = reference_photos(dataset, n_images, rng)
    a_imgs = [dataset.read_rgb(r) for r in a_recs]
    b_imgs = [dataset.read_rgb(r) for r in b_recs]

    kw = dict(device=device, tile=tile, overlap=overlap, batch=batch, border=border)
    G = Translator.load(model_dir, "AtoB", **kw)
    fake = G(a_imgs)
    has_inverse = (Path(model_dir) / "G_BA.safetensors").is_file()
    if has_inverse:
        F_ = Translator.load(model_dir, "BtoA", **kw)
        rec_a, rec_b = F_(fake), G(F_(b_imgs))

    img_f1 = [edge_f1(a, f) for a, f in zip(a_imgs, fake)]
    img_ssim = [gradient_ssim(a, f) for a, f in zip(a_imgs, fake)]
    boxes = [s for r, a, f in zip(a_recs, a_imgs, fake)
             for s in box_structure(a, f, [list(x.bbox) for x in by_image.get(r.id, [])])]
    out: dict[str, Any] = {
        "n_a": len(a_imgs), "n_b": len(b_imgs), "b_reference": f"B_{b_split}", "generator": G.sha256,
        "realism": two_sample_test(b_imgs, fake, steps=critic_steps, seed=seed, device=device),
        "realism_raw_a": two_sample_test(b_imgs, a_imgs, steps=critic_steps, seed=seed, device=device),
        "structure": {
            "edge_f1": float(np.mean(img_f1)), "gradient_ssim": float(np.mean(img_ssim)),
            "box_edge_f1": float(np.mean([b["edge_f1"] for b in boxes])) if boxes else None,
            "box_gradient_ssim": float(np.mean([b["gradient_ssim"] for b in boxes])) if boxes else None,
            "n_boxes": len(boxes),
        },
        "cycle_l1": _l1(a_imgs, rec_a) if has_inverse else None,
        "cycle_l1_B": _l1(b_imgs, rec_b) if has_inverse else None,
    }
    if inception_weights:
        fr = inception_features(b_imgs, inception_weights, device)
        ff = inception_features(fake, inception_weights, device)
        k, ks = kid(fr, ff, seed=seed)
        out["inception"] = {"fid": fid(fr, ff), "kid": k, "kid_std": ks, "weights": str(inception_weights)}
    return out


def fit_realism_critic(model_dir: str | Path, dataset: "DatasetVersion", *, n_images: int = 256,
                       steps: int = 300, seed: int = 0, device: str = "cpu", tile: int = 512,
                       overlap: int | None = None, batch: int = 8, border: int = BORDER) -> dict[str, Any]:
    """Train and save <model_dir>/realism_critic.safetensors: real B training photos
    (B_unlabelled + B_train, as the GAN saw) vs G_AB(A_train), up to n_images of each; B_val and
    B_test are never read. Returns the critic's card (held-out accuracy and CI, sizes)."""
    from pipeline.gan.data import training_images
    from pipeline.gan.translate import Translator

    rng = np.random.default_rng(seed)
    a_items, b_items = training_images(dataset)

    def read(items: list) -> list[np.ndarray]:
        out = []
        for item in sample(items, n_images, rng):
            bgr = cv2.imread(str(item.path), cv2.IMREAD_COLOR)
            if bgr is not None:  # unreadable files were already reported by ingest/training
                out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        return out

    G = Translator.load(model_dir, "AtoB", device, tile=tile, overlap=overlap, batch=batch, border=border)
    fake = G(read(a_items))
    card = train_realism_critic(Path(model_dir) / REALISM_CRITIC, read(b_items), fake, steps=steps, seed=seed,
                                device=device)
    return {**card, "trained_on": "real B_unlabelled + B_train vs G_AB(A_train)", "generator": G.sha256}
