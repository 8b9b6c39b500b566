"""Statistics over seeds and test images.

`summarize` gives mean ± sample std over seeds. `bootstrap_map` re-accumulates COCO mAP for many
resamples of the test images (with replacement) from one COCOeval pass: a resample is a vector of
per-image multiplicities, and since COCO's accumulate() only needs detections sorted by score,
weighting each detection and ground truth by its image's multiplicity equals evaluating the
resampled set — without re-running the matching. `paired_bootstrap` then draws the *same*
resamples for two arms and gives the percentile CI of the mAP difference.
`HierarchicalBootstrap` also resamples the training runs (GAN seeds, then detector seeds), so
its intervals include the training noise of both models; `gap_closed` gives the share of the
real -> oracle gap an arm closes, with its interval.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from pipeline.detect.evaluate import PerImageEval

_EPS = np.spacing(1)  # pycocotools' guard against 0/0
_CHUNK_ELEMENTS = 4_000_000  # floats per (resamples x IoU x detections) block: bounds memory


def summarize(values: list[float]) -> dict[str, float | int | None]:
    """{"mean", "std" (sample, ddof 1; None below 2 values), "n"}."""
    v = [float(x) for x in values if x is not None and not math.isnan(x)]
    if not v:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else None, "n": len(v)}


def resample_counts(n_images: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n_images) multiplicities of a bootstrap over images (each row sums to n)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_images, size=(resamples, n_images))
    counts = np.zeros((resamples, n_images), dtype=np.float64)
    np.add.at(counts, (np.arange(resamples)[:, None], idx), 1.0)
    return counts


def bootstrap_map(pe: PerImageEval, counts: np.ndarray, iou: float | None = None) -> np.ndarray:
    """COCO mAP for each row of `counts` (R, I): mean over IoU thresholds (or the one nearest
    `iou`) and over classes with ground truth in that resample. A row of ones gives exactly
    COCOeval's stats[0] (or stats[1] for iou=0.5). NaN where no class has ground truth."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim == 1:
        counts = counts[None]
    if iou is None:
        t_sel = np.arange(len(pe.iou_thrs))
    else:
        t_sel = np.array([int(np.argmin(np.abs(pe.iou_thrs - iou)))])
    total = np.zeros(counts.shape[0])
    n_valid = np.zeros(counts.shape[0])
    for cls in pe.classes:
        npig = counts @ cls["npig"]  # (R,)
        valid = npig > 0
        ap = _class_ap(cls, counts, npig, t_sel, pe.rec_thrs)  # (R,) mean over t_sel
        total += np.where(valid, ap, 0.0)
        n_valid += valid
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_valid > 0, total / n_valid, np.nan)


def _class_ap(cls: dict[str, np.ndarray], counts: np.ndarray, npig: np.ndarray, t_sel: np.ndarray,
              rec_thrs: np.ndarray) -> np.ndarray:
    """AP of one class per resample, averaged over IoU thresholds t_sel: COCO accumulate() with
    detection weights = their image's multiplicity.

    Only true-positive positions are materialised per threshold: precision is highest right at a
    true positive (a false positive only grows the denominator), so the precision envelope, and
    the first position reaching each recall level, are both found among them. Counts of scored
    detections come from one cumulative sum over all detections."""
    R = counts.shape[0]
    tp_all, counted_all = cls["tp"][t_sel], cls["counted"][t_sel]
    T, n = tp_all.shape
    out = np.zeros(R)
    if n == 0:
        return out
    same_counted = bool((counted_all == counted_all[:1]).all())  # no ignored GT: one cumsum serves all
    positions = [np.flatnonzero(tp_all[t]) for t in range(T)]
    step = max(1, _CHUNK_ELEMENTS // n)
    for r0 in range(0, R, step):
        w = counts[r0 : r0 + step][:, cls["img"]]  # (r, n) multiplicity of each detection
        g = npig[r0 : r0 + step]
        acc = np.zeros(w.shape[0])
        scored = None
        for t in range(T):
            if scored is None or not same_counted:
                scored = np.cumsum(w * counted_all[t], axis=1)  # (r, n) detections counted so far
            pos = positions[t]
            if pos.size == 0:
                continue  # no true positive at this IoU: AP 0
            tp = np.cumsum(w[:, pos], axis=1)  # (r, m) true positives so far, at each TP
            pr = tp / (scored[:, pos] + _EPS)
            env = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # precision envelope
            idx = _first_reaching(tp, g, rec_thrs)  # (r, 101) first TP with recall >= threshold
            m = pos.size
            q = np.where(idx < m, np.take_along_axis(env, np.minimum(idx, m - 1), axis=1), 0.0)
            acc += np.where(g > 0, q.mean(axis=1), 0.0)
        out[r0 : r0 + w.shape[0]] = acc / T
    return out


def _first_reaching(tp: np.ndarray, g: np.ndarray, rec_thrs: np.ndarray) -> np.ndarray:
    """For each row of cumulative true positives tp (r, m) with g ground truths, the index where
    recall tp/g first reaches each threshold, as COCO's searchsorted(rc, recThrs, 'left'); m when
    never. Done in integer counts so one searchsorted serves all rows without rounding: the
    threshold becomes the least count k with k/g >= thr (the same float division COCO does)."""
    r, m = tp.shape
    gg = np.maximum(g, 1.0)[:, None]
    thr = rec_thrs[None, :]
    k = np.ceil(thr * gg)
    k = np.where((k - 1) / gg >= thr, k - 1, k)
    k = np.where(k / gg < thr, k + 1, k)
    big = float(max(tp.max(initial=0.0), k.max()) + 1)  # rows never overlap once offset by this
    off = np.arange(r, dtype=np.float64)[:, None] * big
    flat = (tp + off).ravel()
    idx = np.searchsorted(flat, (k + off).ravel(), side="left").reshape(r, -1)
    return idx - np.arange(r)[:, None] * m


@dataclass
class BootstrapCI:
    delta: float  # point estimate on the full test set (mean over seeds)
    ci_low: float
    ci_high: float
    resamples: int

    @property
    def significant(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0


def paired_bootstrap(
    treatment: list[PerImageEval], baseline: list[PerImageEval], resamples: int = 1000, seed: int = 0,
    alpha: float = 0.05, iou: float | None = None, cache: dict | None = None,
) -> BootstrapCI:
    """CI of mAP(treatment) - mAP(baseline) over test images; each list holds one evaluation per
    training seed (averaged), all on the same test images, resampled identically. Pass the same
    `cache` dict to several calls with equal resamples/seed to re-accumulate each run only once."""
    if not treatment or not baseline:
        raise ValueError("paired bootstrap needs at least one evaluation per arm")
    ids = treatment[0].image_ids
    for pe in treatment + baseline:
        if pe.image_ids != ids:
            raise ValueError("paired bootstrap needs both arms evaluated on the same test images")
    counts = resample_counts(len(ids), resamples, seed)
    ones = np.ones((1, len(ids)))

    memo = cache if cache is not None else {}

    def one(pe: PerImageEval, c: np.ndarray) -> np.ndarray:
        key = (id(pe), c.shape[0], seed, iou)
        if key not in memo:
            memo[key] = bootstrap_map(pe, c, iou)
        return memo[key]

    def mean_map(pes: list[PerImageEval], c: np.ndarray) -> np.ndarray:
        return np.mean([one(pe, c) for pe in pes], axis=0)

    point = float(mean_map(treatment, ones)[0] - mean_map(baseline, ones)[0])
    deltas = mean_map(treatment, counts) - mean_map(baseline, counts)
    deltas = deltas[~np.isnan(deltas)]
    lo, hi = np.quantile(deltas, [alpha / 2, 1 - alpha / 2])
    return BootstrapCI(point, float(lo), float(hi), int(deltas.size))


# ------------------------------------------------------------------- training noise: seeds too
RunKey = tuple[int | None, int]  # (GAN seed, or None for an arm that uses no GAN; detector seed)


@dataclass(frozen=True)
class RunMaps:
    """One run's mAP on the full test set and on each image resample: what the hierarchical
    bootstrap combines (computed from a PerImageEval, or given directly)."""

    full: float
    resampled: np.ndarray  # (R,)


@dataclass(frozen=True)
class ArmEvals:
    """One arm's evaluations on the same test images, one per finished training run."""

    name: str
    runs: dict[RunKey, PerImageEval | RunMaps]

    def by_gan(self) -> dict[int | None, list[PerImageEval | RunMaps]]:
        """Runs grouped by GAN seed (detector seeds in ascending order)."""
        out: dict[int | None, list[PerImageEval | RunMaps]] = {}
        for (g, s), pe in sorted(self.runs.items(), key=lambda kv: (kv[0][0] is None, kv[0][0] or 0, kv[0][1])):
            out.setdefault(g, []).append(pe)
        return out


@dataclass
class Interval:
    """A point estimate and its percentile bootstrap interval."""

    point: float
    ci_low: float
    ci_high: float
    resamples: int


class HierarchicalBootstrap:
    """Confidence intervals that include the training noise of both models.

    A resample draws, with replacement, (1) the test images (one draw shared by every arm: the
    comparison stays paired on images), (2) GAN seeds, and (3) for each drawn GAN seed, detector
    seeds among that seed's finished runs. An arm's resampled mAP is the mean over the drawn
    (GAN seed, detector seed) runs of its mAP on the drawn images; arms that use no GAN have one
    level fewer. GAN-seed draws are shared by arms trained on the same GAN seeds (they use the
    same synthetic images); detector-seed draws are the arm's own. With one GAN seed and one
    detector seed this is exactly `paired_bootstrap` (same image draws for the same `seed`).
    """

    def __init__(self, image_ids: list[int], resamples: int = 1000, seed: int = 0, iou: float | None = None):
        self.image_ids, self.resamples, self.seed, self.iou = list(image_ids), resamples, seed, iou
        self.counts = resample_counts(len(image_ids), resamples, seed)
        self._maps: dict[int, RunMaps] = {}  # id(pe) -> its maps
        self._gan_draws: dict[tuple, np.ndarray] = {}
        self._keep: list[PerImageEval] = []  # keeps id() keys valid

    def run_maps(self, run: PerImageEval | RunMaps) -> RunMaps:
        """A run's mAP on the full test set and on every resample of this bootstrap's images."""
        if isinstance(run, RunMaps):
            if run.resampled.shape != (self.resamples,):
                raise ValueError(f"run maps hold {run.resampled.shape} resamples, expected {self.resamples}")
            return run
        if run.image_ids != self.image_ids:
            raise ValueError("hierarchical bootstrap needs every run evaluated on the same test images")
        key = id(run)
        if key not in self._maps:
            full = float(bootstrap_map(run, np.ones((1, len(self.image_ids))), self.iou)[0])
            self._maps[key] = RunMaps(full, bootstrap_map(run, self.counts, self.iou))
            self._keep.append(run)
        return self._maps[key]

    def _draw_gans(self, gans: tuple) -> np.ndarray:
        """(R, G) indices into `gans`, the same for every arm trained on these GAN seeds."""
        if gans not in self._gan_draws:
            rng = np.random.default_rng([self.seed, 1, len(gans)])
            self._gan_draws[gans] = rng.integers(0, len(gans), size=(self.resamples, len(gans)))
        return self._gan_draws[gans]

    def arm(self, ev: ArmEvals) -> tuple[float, np.ndarray]:
        """(point mAP, (R,) resampled mAPs): nested means over GAN seeds, then detector seeds."""
        if not ev.runs:
            raise ValueError(f"arm {ev.name}: no finished run to bootstrap")
        groups = ev.by_gan()
        gans = tuple(groups)
        R = self.resamples
        rng = np.random.default_rng([self.seed, 2, zlib.crc32(ev.name.encode())])
        per_gan_point, per_gan_draws = [], []
        for g in gans:
            runs = [self.run_maps(r) for r in groups[g]]
            full = np.array([r.full for r in runs])
            maps = np.stack([r.resampled for r in runs])  # (S_g, R)
            per_gan_point.append(float(full.mean()))
            slots = len(gans)  # each drawn GAN seed slot draws its own detector seeds
            idx = rng.integers(0, len(runs), size=(slots, R, len(runs)))
            per_gan_draws.append(np.take_along_axis(maps.T[None], idx, axis=2).mean(axis=2))  # (slots, R)
        point = float(np.mean(per_gan_point))
        if len(gans) == 1:
            return point, per_gan_draws[0][0]
        draws = self._draw_gans(gans)  # (R, G): which GAN seed fills each slot
        stacked = np.stack(per_gan_draws)  # (G candidates, slots, R)
        slot = np.arange(len(gans))[None, :]
        chosen = stacked[draws, slot, np.arange(R)[:, None]]  # (R, slots)
        return point, chosen.mean(axis=1)

    def uplift(self, treatment: ArmEvals, baseline: ArmEvals, alpha: float = 0.05) -> BootstrapCI:
        """CI of mAP(treatment) - mAP(baseline)."""
        pt, rt = self.arm(treatment)
        pb, rb = self.arm(baseline)
        d = rt - rb
        d = d[~np.isnan(d)]
        lo, hi = np.quantile(d, [alpha / 2, 1 - alpha / 2])
        return BootstrapCI(pt - pb, float(lo), float(hi), int(d.size))

    def gap_closed(self, arm: ArmEvals, real: ArmEvals, oracle: ArmEvals, alpha: float = 0.05) -> Interval:
        """Share of the real -> oracle gap that `arm` closes: (arm - real) / (oracle - real)."""
        pa, ra = self.arm(arm)
        pr, rr = self.arm(real)
        po, ro = self.arm(oracle)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = (ra - rr) / (ro - rr)
        share = share[np.isfinite(share)]
        point = (pa - pr) / (po - pr) if po != pr else float("nan")
        if share.size == 0:
            return Interval(point, float("nan"), float("nan"), 0)
        lo, hi = np.quantile(share, [alpha / 2, 1 - alpha / 2])
        return Interval(float(point), float(lo), float(hi), int(share.size))
