"""CycleGAN losses: adversarial (lsgan, vanilla, wgan-gp, hinge), cycle consistency, identity,
and `cyclegan_objective`, the generators' full objective in one place.

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
) -> dict[str, torch.Tensor]:
    """The generators' objective (paper eq. 3 plus the identity term of §5.2).

    L = L_GAN(G_AB, D_B) + L_GAN(G_BA, D_A) + λ·(‖F(G(a))−a‖₁ + ‖G(F(b))−b‖₁)
        + λ·λ_idt·(‖G(b)−b‖₁ + ‖F(a)−a‖₁),
    with G = G_AB, F = G_BA; idt_a = G_BA(a), idt_b = G_AB(b). Returns every term and "G" (the sum).
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
    terms["G"] = sum(terms.values())
    return terms
