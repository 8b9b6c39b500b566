"""Realism without downloaded weights: small critics that tell real metal (B) from translated A.

- `two_sample_test(real, fake)`: a cross-fitted classifier two-sample test (Lopez-Paz & Oquab
  2017). Each half of both sets trains a critic that is scored on the other half: held-out
  accuracy (Wilson 95% CI) is 0.5 when the sets are indistinguishable, 1.0 when trivially
  separable. On the same held-out images, within each fold's own feature space: KID (Bińkowski et
  al. 2018, unbiased MMD², subsets of half the set). The diversity ratio (mean pairwise feature
  distance among fakes / among reals; ≪ 1 means mode collapse) uses one fixed untrained critic.
- `train_realism_critic(...)` / `load_realism_scorer(model_dir)`: one critic trained at the end
  of the GAN stage on real B training photos vs G(A_train), saved as realism_critic.safetensors;
  the scorer gives P(real metal) in [0,1] for one image (the synthesis gate uses it).
Images are uint8 RGB (H,W,3); critics see them resized to (size,size), in [-1,1].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.gan.checkpoint import CheckpointError, load_weights, read_metadata, save_weights

REALISM_CRITIC = "realism_critic.safetensors"


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


def to_batch(images: list[np.ndarray], size: int) -> torch.Tensor:
    """uint8 RGB images -> (N,3,size,size) float32 in [-1,1] (area-resized, aspect not kept)."""
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


# ------------------------------------------------------------------------------------- distances
def mmd2_subsets(f_real: np.ndarray, f_fake: np.ndarray, subsets: int = 50, subset_size: int | None = None,
                 seed: int = 0) -> np.ndarray:
    """Unbiased MMD² with k(x,y) = (x·y/d + 1)³ on `subsets` random subset pairs.

    The estimator assumes the two sets are independent samples (no shared images). Subsets hold
    half of the smaller set (or subset_size, if smaller; at least 2), so they differ and the
    spread is real. NaN when a set has fewer than 2 rows.
    """
    rng = np.random.default_rng(seed)
    d = f_real.shape[1]
    n = min(len(f_real), len(f_fake))
    m = max(2, n // 2 if subset_size is None else min(subset_size, n // 2))  # the estimator needs 2
    if m > n:
        return np.full(1, np.nan)
    vals = np.empty(subsets)
    for i in range(subsets):
        x = f_real[rng.choice(len(f_real), m, replace=False)].astype(np.float64)
        y = f_fake[rng.choice(len(f_fake), m, replace=False)].astype(np.float64)
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        vals[i] = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
    return vals


def kid(f_real: np.ndarray, f_fake: np.ndarray, subsets: int = 50, subset_size: int | None = None,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance on (N,d) features: mean and std of mmd2_subsets."""
    vals = mmd2_subsets(f_real, f_fake, subsets, subset_size, seed)
    return float(np.mean(vals)), float(np.std(vals))


def mean_pairwise_distance(f: np.ndarray) -> float:
    if len(f) < 2:
        return float("nan")
    d = np.sqrt(np.maximum(((f[:, None, :] - f[None, :, :]) ** 2).sum(-1), 0))
    return float(d[np.triu_indices(len(f), 1)].mean())


# ----------------------------------------------------------------------------- two-sample test
def two_sample_test(real: list[np.ndarray], fake: list[np.ndarray], *, size: int = 64, steps: int = 150,
                    seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Cross-fitted classifier two-sample test; see the module docstring.

    Returns accuracy (pooled over both held-out halves), ci_low/ci_high, n, kid/kid_std (each
    fold's own features, both folds' subsets pooled) and diversity_ratio. The two sets should be
    independent samples: identical images in both make the held-out halves overlap.
    """
    if min(len(real), len(fake)) < 4:
        raise ValueError(f"two_sample_test needs ≥4 images per set, got {len(real)} real, {len(fake)} fake")
    xr, xf = to_batch(real, size), to_batch(fake, size)
    pr = torch.randperm(len(xr), generator=torch.Generator().manual_seed(seed))
    pf = torch.randperm(len(xf), generator=torch.Generator().manual_seed(seed + 7919))
    halves_r, halves_f = (pr[: len(pr) // 2], pr[len(pr) // 2:]), (pf[: len(pf) // 2], pf[len(pf) // 2:])
    correct = total = 0
    mmd = []
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
            f = critic.features(x).cpu().numpy().astype(np.float64)
        # z-score with this fold's pooled statistics: the critic's feature scale is arbitrary, KID's
        # kernel is not; the two folds' critics have unrelated feature spaces, so nothing is mixed
        f = (f - f.mean(0)) / (f.std(0) + 1e-6)
        mmd.append(mmd2_subsets(f[: len(te_r)], f[len(te_r):], seed=seed + fold))
    lo, hi = wilson_interval(correct, total)
    vals = np.concatenate(mmd)
    return {"accuracy": correct / total, "ci_low": lo, "ci_high": hi, "n": total,
            "kid": float(np.mean(vals)), "kid_std": float(np.std(vals)),
            "diversity_ratio": diversity_ratio(xr, xf, seed=seed, device=device)}


def diversity_ratio(real: torch.Tensor, fake: torch.Tensor, *, seed: int = 0, device: str = "cpu") -> float:
    """Mean pairwise distance among fakes / among reals, (N,3,s,s) batches in [-1,1].

    Measured in one fixed feature space that knows neither set: a seeded, untrained Critic's pooled
    features, z-scored with both sets' statistics. (A critic trained to tell the sets apart maps
    the two classes to differently spread regions, so its features would bias the ratio.) 1 = as
    varied as real B, 0 = every translation alike (mode collapse).
    """
    torch.manual_seed(seed)
    net = Critic().eval().to(device)
    with torch.no_grad():
        f = torch.cat([net.features(x.to(device)) for x in (real, fake)]).cpu().numpy().astype(np.float64)
    f = (f - f.mean(0)) / (f.std(0) + 1e-6)
    div_r = mean_pairwise_distance(f[: len(real)])
    return mean_pairwise_distance(f[len(real):]) / div_r if div_r > 0 else float("nan")


def _train_critic(real: torch.Tensor, fake: torch.Tensor, steps: int, seed: int, device: str,
                  width: int = 16) -> Critic:
    """Adam on balanced batches (16 real + 16 fake, drawn with replacement, random h-flips)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    critic = Critic(width).to(device)
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


# --------------------------------------------------------------------- the stage's realism critic
def train_realism_critic(path: str | Path, real: list[np.ndarray], fake: list[np.ndarray], *, size: int = 64,
                         steps: int = 300, holdout: float = 0.25, seed: int = 0, device: str = "cpu",
                         width: int = 16) -> dict[str, Any]:
    """Train a critic on real B vs translated A, save it to `path` (safetensors), return its card.

    A `holdout` share of each set is kept out of training and gives the held-out accuracy (with
    its Wilson CI): how well the saved critic separates real metal from this generator's output.
    """
    n_r, n_f = len(real), len(fake)
    if min(n_r, n_f) < 4:
        raise ValueError(f"realism critic needs ≥4 images per set, got {n_r} real, {n_f} translated")
    rng = np.random.default_rng(seed)
    pr, pf = rng.permutation(n_r), rng.permutation(n_f)
    kr, kf = max(1, round(n_r * holdout)), max(1, round(n_f * holdout))
    xr, xf = to_batch(real, size), to_batch(fake, size)
    critic = _train_critic(xr[pr[kr:]], xf[pf[kf:]], steps, seed, device, width)
    with torch.no_grad():
        logits = critic(torch.cat([xr[pr[:kr]], xf[pf[:kf]]]).to(device)).cpu()
    y = torch.cat([torch.ones(kr), torch.zeros(kf)])
    correct = int(((logits > 0).float() == y).sum())
    lo, hi = wilson_interval(correct, kr + kf)
    card = {"file": Path(path).name, "size": size, "width": width, "steps": steps, "seed": seed,
            "n_train": {"real": n_r - kr, "translated": n_f - kf}, "n_heldout": kr + kf,
            "heldout_accuracy": correct / (kr + kf), "ci_low": lo, "ci_high": hi}
    save_weights(path, critic.state_dict(), card)
    return card


def load_realism_scorer(model_dir: str | Path, device: str = "cpu") -> Callable[[np.ndarray], float] | None:
    """P(real metal) in [0,1] for one uint8 RGB (H,W,3) image, from the model directory's
    realism_critic.safetensors; None when the directory has no such file."""
    path = Path(model_dir) / REALISM_CRITIC
    if not path.is_file():
        return None
    meta = read_metadata(path)
    critic = Critic(int(meta.get("width", 16)))
    try:
        critic.load_state_dict(load_weights(path))
    except RuntimeError as e:
        raise CheckpointError(f"{path}: not a realism critic state dict ({e})") from None
    critic = critic.eval().to(device)
    size = int(meta.get("size", 64))

    def score(image: np.ndarray) -> float:
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3
                and image.dtype == np.uint8):
            got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ValueError(f"realism scorer: expected a uint8 (H,W,3) RGB image, got {got}")
        with torch.inference_mode():
            return float(torch.sigmoid(critic(to_batch([image], size).to(device)))[0])

    return score
