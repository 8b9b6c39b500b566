"""How good is a CycleGAN, measured offline (no downloaded weights).

- realism: a classifier two-sample test (Lopez-Paz & Oquab 2017) — a small CNN learns to tell real
  B from translated A; its held-out accuracy (with a Wilson 95% CI) is 0.5 when the two are
  indistinguishable and 1.0 when trivially separable. KID (Bińkowski et al. 2018) on that CNN's
  features of held-out images gives a distance as well.
- structure: edge-map F1 and gradient SSIM between A and G(A), over the image and inside boxes.
- cycle: mean |A − F(G(A))| in [0,1].
- diversity: mean pairwise feature distance among translated images divided by that among real B
  (≪ 1 means mode collapse).
- FID/KID on Inception-v3 pool features when the user supplies local weights (`inception_weights`).
Images are uint8 RGB (H,W,3).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from pipeline.data.version import DatasetVersion


# ------------------------------------------------------------------------------------- structure
def _gray(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img


def _edges(gray: np.ndarray) -> np.ndarray:
    """Canny with thresholds from the median (so both domains get comparable edge maps)."""
    med = float(np.median(gray))
    lo, hi = int(max(0, 0.66 * med)), int(min(255, 1.33 * med))
    hi = max(hi, lo + 10)
    return cv2.Canny(cv2.GaussianBlur(gray, (3, 3), 0), lo, hi) > 0


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


# --------------------------------------------------------------------------------------- realism
class Critic(nn.Module):
    """Small CNN: (N,3,64,64) in [-1,1] -> logit; `features` gives the 4·width pooled features."""

    def __init__(self, width: int = 16):
        super().__init__()
        c = width
        self.body = nn.Sequential(
            nn.Conv2d(3, c, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(c, 2 * c, 4, 2, 1), nn.GroupNorm(8, 2 * c), nn.LeakyReLU(0.2, True),
            nn.Conv2d(2 * c, 4 * c, 4, 2, 1), nn.GroupNorm(8, 4 * c), nn.LeakyReLU(0.2, True),
            nn.Conv2d(4 * c, 4 * c, 3, 1, 1), nn.LeakyReLU(0.2, True))
        self.head = nn.Linear(4 * c, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)


def _batch(images: list[np.ndarray], size: int) -> torch.Tensor:
    arr = np.stack([cv2.resize(i, (size, size), interpolation=cv2.INTER_AREA) for i in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def kid(f_real: np.ndarray, f_fake: np.ndarray, subsets: int = 20, subset_size: int = 100,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: unbiased MMD² with k(x,y) = (x·y/d + 1)³, mean and std over subsets."""
    rng = np.random.default_rng(seed)
    d = f_real.shape[1]
    m = min(len(f_real), len(f_fake), subset_size)
    if m < 2:
        return float("nan"), float("nan")
    vals = []
    for _ in range(subsets):
        x = f_real[rng.choice(len(f_real), m, replace=False)].astype(np.float64)
        y = f_fake[rng.choice(len(f_fake), m, replace=False)].astype(np.float64)
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        mmd = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
        vals.append(mmd)
    return float(np.mean(vals)), float(np.std(vals))


def mean_pairwise_distance(f: np.ndarray) -> float:
    if len(f) < 2:
        return float("nan")
    d = np.sqrt(np.maximum(((f[:, None, :] - f[None, :, :]) ** 2).sum(-1), 0))
    return float(d[np.triu_indices(len(f), 1)].mean())


def two_sample_test(real: list[np.ndarray], fake: list[np.ndarray], *, size: int = 64, steps: int = 150,
                    seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Cross-fitted classifier two-sample test: train on one half, test on the other, then swap.

    Returns accuracy (pooled over both held-out halves), its Wilson CI, n, KID and the diversity
    ratio on held-out critic features.
    """
    if min(len(real), len(fake)) < 4:
        raise ValueError(f"two_sample_test needs ≥4 images per set, got {len(real)} real, {len(fake)} fake")
    xr, xf = _batch(real, size), _batch(fake, size)
    # the same split rule for both sets (identical sets get identical halves)
    pr = torch.randperm(len(xr), generator=torch.Generator().manual_seed(seed))
    pf = torch.randperm(len(xf), generator=torch.Generator().manual_seed(seed))
    halves_r, halves_f = (pr[: len(pr) // 2], pr[len(pr) // 2:]), (pf[: len(pf) // 2], pf[len(pf) // 2:])
    correct = total = 0
    feats_r, feats_f = [], []
    for fold in (0, 1):
        tr_r, te_r = halves_r[fold], halves_r[1 - fold]
        tr_f, te_f = halves_f[fold], halves_f[1 - fold]
        critic = _train_critic(xr[tr_r], xf[tr_f], steps, seed + fold, device)
        with torch.no_grad():
            x = torch.cat([xr[te_r], xf[te_f]]).to(device)
            y = torch.cat([torch.ones(len(te_r)), torch.zeros(len(te_f))])
            logits = critic(x).cpu()
            correct += int(((logits > 0).float() == y).sum())
            total += len(y)
            f = critic.features(x).cpu().numpy()
        feats_r.append(f[: len(te_r)])
        feats_f.append(f[len(te_r):])
    acc = correct / total
    lo, hi = wilson_interval(correct, total)
    fr, ff = np.concatenate(feats_r), np.concatenate(feats_f)
    # z-score with the pooled statistics: the critic's feature scale is arbitrary, KID's kernel is not
    both = np.concatenate([fr, ff])
    mu, sd = both.mean(0), both.std(0) + 1e-6
    fr, ff = (fr - mu) / sd, (ff - mu) / sd
    k_mean, k_std = kid(fr, ff, seed=seed)
    div_r, div_f = mean_pairwise_distance(fr), mean_pairwise_distance(ff)
    return {"accuracy": acc, "ci_low": lo, "ci_high": hi, "n": total, "kid": k_mean, "kid_std": k_std,
            "diversity_ratio": div_f / div_r if div_r > 0 else float("nan")}


def _train_critic(real: torch.Tensor, fake: torch.Tensor, steps: int, seed: int, device: str) -> Critic:
    """Adam on balanced batches (16 real + 16 fake, drawn with replacement, random h-flips)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    critic = Critic().to(device)
    opt = torch.optim.Adam(critic.parameters(), lr=1e-3, betas=(0.5, 0.999))
    y = torch.cat([torch.ones(16), torch.zeros(16)]).to(device)
    for _ in range(steps):
        xb = torch.cat([real[torch.randint(len(real), (16,), generator=g)],
                        fake[torch.randint(len(fake), (16,), generator=g)]])
        flip = torch.rand(32, generator=g) < 0.5  # flips only: colour and texture cues stay intact
        xb = torch.where(flip[:, None, None, None], xb.flip(3), xb).to(device)
        loss = F.binary_cross_entropy_with_logits(critic(xb), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return critic.eval()


# -------------------------------------------------------------------------------------- inception
def inception_features(images: list[np.ndarray], weights: str | Path, device: str = "cpu",
                       batch: int = 16) -> np.ndarray:
    """(N,2048) Inception-v3 pool features from a local weights file (safetensors or plain .pth)."""
    from torchvision.models import inception_v3

    from pipeline.gan.checkpoint import load_weights

    net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=False)
    net.load_state_dict(load_weights(weights), strict=False)
    net.fc = nn.Identity()
    net.eval().to(device)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch):
            x = _batch(images[s:s + batch], 299).add(1).div(2)
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
def evaluate_quality(model_dir: str | Path, dataset: "DatasetVersion", *, n_images: int = 64, seed: int = 0,
                     device: str = "cpu", tile: int = 512, overlap: int = 64, batch: int = 8, critic_steps: int = 150,
                     inception_weights: str | Path | None = None) -> dict[str, Any]:
    """All metrics above for a model directory, on up to n_images labelled A and real B photos.

    Real B are held-out photos (B_val; B_unlabelled when there is no B_val): evaluation only,
    nothing is trained on them here. The same realism test on the raw A photos is the baseline a
    useful generator must beat.
    """
    from pipeline.gan.translate import Translator

    rng = np.random.default_rng(seed)
    a_coco = dataset.coco("A", "train")
    a_recs = [a_coco.images[i] for i in sorted(rng.permutation(len(a_coco.images))[:n_images])]
    by_image = a_coco.anns_by_image()
    b_split = "val" if dataset.has("B", "val") else "unlabelled"
    b_coco = dataset.coco("B", b_split)
    b_recs = [b_coco.images[i] for i in sorted(rng.permutation(len(b_coco.images))[:n_images])]
    a_imgs = [dataset.read_rgb(r) for r in a_recs]
    b_imgs = [dataset.read_rgb(r) for r in b_recs]

    kw = dict(device=device, tile=tile, overlap=overlap, batch=batch)
    G, F_ = Translator.load(model_dir, "AtoB", **kw), Translator.load(model_dir, "BtoA", **kw)
    fake = G(a_imgs)
    rec = F_(fake)

    img_f1 = [edge_f1(a, f) for a, f in zip(a_imgs, fake)]
    img_ssim = [gradient_ssim(a, f) for a, f in zip(a_imgs, fake)]
    boxes = [s for r, a, f in zip(a_recs, a_imgs, fake)
             for s in box_structure(a, f, [list(x.bbox) for x in by_image.get(r.id, [])])]
    cycle = float(np.mean([np.abs(a.astype(np.float32) - r.astype(np.float32)).mean() / 255 for a, r in zip(a_imgs, rec)]))
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
        "cycle_l1": cycle,
    }
    if inception_weights:
        fr, ff = inception_features(b_imgs, inception_weights, device), inception_features(fake, inception_weights, device)
        k, ks = kid(fr, ff, seed=seed)
        out["inception"] = {"fid": fid(fr, ff), "kid": k, "kid_std": ks, "weights": str(inception_weights)}
    return out
