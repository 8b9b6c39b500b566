"""Translator losses: adversarial (lsgan, vanilla, wgan-gp, hinge), cycle consistency, identity,
structure (gradient SSIM, weighted inside the boxes), PatchNCE (CUT), and `cyclegan_objective`,
the CycleGAN generators' full objective in one place.

Predictions are PatchGAN logits of any shape; images are (N,3,H,W) in [-1,1].
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

GanMode = Literal["lsgan", "vanilla", "wgangp", "hinge"]


class GANLoss(nn.Module):
    """Adversarial loss on discriminator outputs.

    `loss(pred, target_is_real)` for the generator (target_is_real=True) and for each half of the
    discriminator loss. lsgan: MSE to 1/0 (Mao et al.); vanilla: non-saturating BCE on logits;
    wgangp: -/+ mean critic score; hinge: relu(1 ∓ D) for the discriminator, -mean(D) for the
    generator (`for_discriminator` picks which).
    """

    def __init__(self, mode: GanMode = "lsgan"):
        super().__init__()
        if mode not in ("lsgan", "vanilla", "wgangp", "hinge"):
            raise ValueError(f"gan mode {mode!r} not one of lsgan, vanilla, wgangp, hinge")
        self.mode = mode

    def forward(self, pred: torch.Tensor, target_is_real: bool,
                for_discriminator: bool = True) -> torch.Tensor:
        pred = pred.float()  # losses in fp32 even under autocast
        if self.mode == "lsgan":
            return F.mse_loss(pred, torch.full_like(pred, 1.0 if target_is_real else 0.0))
        if self.mode == "vanilla":
            target = torch.full_like(pred, 1.0 if target_is_real else 0.0)
            return F.binary_cross_entropy_with_logits(pred, target)
        if self.mode == "wgangp":
            return -pred.mean() if target_is_real else pred.mean()
        # hinge
        if not for_discriminator:
            return -pred.mean()
        return F.relu(1.0 - pred).mean() if target_is_real else F.relu(1.0 + pred).mean()


def gradient_penalty(netD: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     lambda_gp: float = 10.0) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al.): lambda · E[(‖∇D(x̂)‖₂ − 1)²] at x̂ = α·real + (1−α)·fake,
    α ~ U(0,1) per sample."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    out = netD(x_hat)
    (grad,) = torch.autograd.grad(out.float().sum(), x_hat, create_graph=True)
    norms = grad.float().flatten(1).norm(2, dim=1)
    return lambda_gp * ((norms - 1.0) ** 2).mean()


def cycle_loss(reconstructed: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """‖F(G(x)) − x‖₁ (mean absolute error, images in [-1,1])."""
    return F.l1_loss(reconstructed.float(), real.float())


def identity_loss(same: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """‖G(y) − y‖₁: a generator fed its own target domain should leave it unchanged."""
    return F.l1_loss(same.float(), real.float())


_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
_LUMA = (0.299, 0.587, 0.114)


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    r = max(1, int(round(3 * sigma)))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def gradient_magnitude(img: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) in [-1,1] -> (N,1,H,W) Sobel gradient magnitude of the luminance (fp32)."""
    x = img.float()
    gray = sum(c * x[:, i : i + 1] for i, c in enumerate(_LUMA))
    k = torch.stack([_SOBEL, _SOBEL.t()])[:, None].to(gray.device)  # (2,1,3,3)
    g = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), k)
    return torch.sqrt(g[:, :1] ** 2 + g[:, 1:] ** 2 + 1e-8)


def structure_loss(real: torch.Tensor, fake: torch.Tensor, weight: torch.Tensor | None = None,
                   sigma: float = 1.5) -> torch.Tensor:
    """1 - SSIM of the gradient magnitudes of `real` and `fake` ((N,3,H,W) in [-1,1]): outlines must
    stay where they are, whatever their colour or brightness (the translation may turn a bright bed
    dark), so it is blind to polarity and to the colour map. `weight` (N,1,H,W) >= 0 weights the
    SSIM map (e.g. more inside the boxes); the same measure as quality.gradient_ssim, differentiable.
    0 for identical images; grows as an outline moves, blurs or vanishes."""
    x, y = gradient_magnitude(real), gradient_magnitude(fake)
    k = _gaussian_kernel(sigma).to(x.device)[None, None]
    pad = k.shape[-1] // 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(t, (pad, pad, pad, pad), mode="replicate"), k)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    L = torch.maximum(x.detach().amax(dim=(1, 2, 3), keepdim=True), y.detach().amax(dim=(1, 2, 3), keepdim=True))
    L = L.clamp_min(1e-3)  # dynamic range of the gradient maps, per image
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    ssim = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    if weight is None:
        return 1.0 - ssim.mean()
    w = weight.float()
    return 1.0 - (ssim * w).sum() / w.sum().clamp_min(1e-8)


def patch_nce_loss(feat_q: torch.Tensor, feat_k: torch.Tensor, tau: float = 0.07) -> torch.Tensor:
    """PatchNCE (Park et al. 2020): for each sampled patch of the output (query, (N,P,C) unit
    vectors) the patch at the same place of the input (key) is the positive and the image's other
    patches are the negatives; cross-entropy over P candidates at temperature tau."""
    q, k = feat_q.float(), feat_k.float().detach()
    logits = torch.bmm(q, k.transpose(1, 2)) / tau  # (N, P, P): diagonal = positives
    target = torch.arange(q.shape[1], device=q.device).expand(q.shape[0], -1)
    return F.cross_entropy(logits.flatten(0, 1), target.flatten())


def cyclegan_objective(
    gan: GANLoss,
    d_b_on_fake_b: torch.Tensor,
    d_a_on_fake_a: torch.Tensor,
    real_a: torch.Tensor,
    real_b: torch.Tensor,
    rec_a: torch.Tensor,
    rec_b: torch.Tensor,
    idt_a: torch.Tensor | None,
    idt_b: torch.Tensor | None,
    lambda_cycle: float = 10.0,
    lambda_identity: float = 0.5,
    fake_b: torch.Tensor | None = None,
    structure_weight: torch.Tensor | None = None,
    lambda_structure: float = 0.0,
) -> dict[str, torch.Tensor]:
    """The generators' objective (paper eq. 3 plus the identity term of §5.2, plus structure).

    L = L_GAN(G_AB, D_B) + L_GAN(G_BA, D_A) + λ·(‖F(G(a))−a‖₁ + ‖G(F(b))−b‖₁)
        + λ·λ_idt·(‖G(b)−b‖₁ + ‖F(a)−a‖₁) + λ_s·(1 − gradient SSIM(a, G(a)) weighted by w),
    with G = G_AB, F = G_BA; idt_a = G_BA(a), idt_b = G_AB(b); w = `structure_weight` (more
    inside the replica's boxes). Returns every term and "G" (the sum).
    """
    terms = {
        "G_AB": gan(d_b_on_fake_b, True, for_discriminator=False),
        "G_BA": gan(d_a_on_fake_a, True, for_discriminator=False),
        "cycle_A": cycle_loss(rec_a, real_a) * lambda_cycle,
        "cycle_B": cycle_loss(rec_b, real_b) * lambda_cycle,
    }
    if lambda_identity > 0 and idt_a is not None and idt_b is not None:
        terms["idt_A"] = identity_loss(idt_a, real_a) * lambda_cycle * lambda_identity
        terms["idt_B"] = identity_loss(idt_b, real_b) * lambda_cycle * lambda_identity
    if lambda_structure > 0 and fake_b is not None:
        terms["structure_A"] = structure_loss(real_a, fake_b, structure_weight) * lambda_structure
    terms["G"] = sum(terms.values())
    return terms
