"""CUT and FastCUT (Park et al. 2020, "Contrastive Learning for Unpaired Image-to-Image
Translation"): one generator G (A→B), one PatchGAN D_B, and PatchNCE instead of a cycle.

A patch of G(a) must be more like the patch of `a` at the same place than like a's other patches,
in the generator's own encoder features (several layers, each through a small MLP head `F`):
content stays where it was, without an inverse network. CUT adds the same loss on B → G(B)
(identity NCE, λ_NCE 1); FastCUT drops it and weighs NCE ×10. About half CycleGAN's compute per
step (two generator passes instead of six).

    L_G = L_GAN(G, D_B) + λ_NCE · ½(PatchNCE(a, G(a)) + PatchNCE(b, G(b)))    (CUT)
    L_G = L_GAN(G, D_B) + λ_NCE · PatchNCE(a, G(a))                            (FastCUT)
plus the optional structure term of the CycleGAN objective (losses.structure_loss).

`CUT(opt, device)` has the training interface of `train.CycleGAN` (set_input,
optimize_parameters, losses, visuals, lr, state_dict, pools), so the training loop, checkpoints,
resume and the stage are the same for every translator; `G_AB` is the generator it saves.
"""

from __future__ import annotations

import itertools
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.gan.accel import amp_dtype, resolve_precision, use_channels_last
from pipeline.gan.losses import GANLoss, gradient_penalty, patch_nce_loss, structure_loss
from pipeline.gan.networks import PatchDiscriminator, ResnetGenerator, init_weights
from pipeline.gan.cyclegan import Checkpointed, LinearDecay, normalise_batch

NCE_DEFAULTS = {"cut": (1.0, True), "fastcut": (10.0, False)}  # λ_NCE, identity NCE


class PatchSampleMLP(nn.Module):
    """CUT's F: for each encoder layer a 2-layer MLP head (C -> nc -> nc), applied to the features
    at sampled positions, then L2-normalised: (N,C,H,W) -> (N,P,nc)."""

    def __init__(self, channels: list[int], nc: int = 256):
        super().__init__()
        self.heads = nn.ModuleList(nn.Sequential(nn.Linear(c, nc), nn.ReLU(), nn.Linear(nc, nc)) for c in channels)

    def forward(self, feats: list[torch.Tensor], patches: int, ids: list[torch.Tensor] | None = None,
                generator: torch.Generator | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Sample `patches` positions per layer (the same for every image of the batch; reuse `ids`
        to sample a second image set at the same places). `generator` (CPU) draws the positions."""
        out, used = [], []
        for i, (f, head) in enumerate(zip(feats, self.heads)):
            flat = f.flatten(2).transpose(1, 2)  # (N, HW, C)
            if ids is None:
                idx = torch.randperm(flat.shape[1], generator=generator)[: min(patches, flat.shape[1])].to(f.device)
            else:
                idx = ids[i]
            out.append(F.normalize(head(flat[:, idx].float()), dim=-1))
            used.append(idx)
        return out, used


class CUT(Checkpointed):
    """The CUT / FastCUT model (opt.model), with CycleGAN's training interface."""

    def __init__(self, opt: Any, device: str | torch.device = "cpu", *, seed: int = 0, rank: int = 0,
                 world_size: int = 1):
        self.opt, self.device = opt, torch.device(device)
        self.world_size = world_size
        default_nce, self.nce_idt = NCE_DEFAULTS[opt.model]
        self.lambda_nce = default_nce if getattr(opt, "lambda_nce", None) is None else opt.lambda_nce
        torch.manual_seed(seed)
        self.G_AB = init_weights(ResnetGenerator(3, 3, opt.ngf, opt.n_blocks, upsample=opt.upsample))
        self.D_B = init_weights(PatchDiscriminator(3, opt.ndf, opt.n_layers_d))
        self.nce_layers = self.G_AB.nce_layers()
        with torch.no_grad():  # channel counts of the sampled layers, from one small dry run
            probe = self.G_AB.encode(torch.zeros(1, 3, 16, 16), self.nce_layers)
        self.F = init_weights(PatchSampleMLP([f.shape[1] for f in probe]))
        for m in self.F.modules():  # init_weights covers convolutions; the heads are linear
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)
        self.precision = resolve_precision(opt.precision, self.device)
        cl = use_channels_last(opt.channels_last, self.device)
        self.memory_format = torch.channels_last if cl else torch.contiguous_format
        for net in (self.G_AB, self.D_B, self.F):
            net.to(self.device, memory_format=self.memory_format)
        if world_size > 1:  # PatchNCE reads the generator's encoder outside its forward: DDP would miss it
            raise ValueError(f"gan.model={opt.model} trains in one process; use gan.model=cyclegan for "
                             "DistributedDataParallel (torchrun) training")
        self.generate = self.G_AB.forward_features  # (output, encoder features) in one pass
        self.disc_step: nn.Module = self.D_B
        if opt.compile:
            self.generate = torch.compile(self.generate)
            self.disc_step = torch.compile(self.disc_step)

        adam = dict(lr=opt.lr, betas=(opt.beta1, 0.999), fused=True)
        self.optimizer_G = torch.optim.Adam(itertools.chain(self.G_AB.parameters(), self.F.parameters()), **adam)
        self.optimizer_D = torch.optim.Adam(self.D_B.parameters(), **adam)
        decay = LinearDecay(opt.iterations, opt.decay_from)
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, decay) for o in (self.optimizer_G, self.optimizer_D)]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.amp_dtype = amp_dtype(self.precision)
        self.criterionGAN = GANLoss(opt.gan_mode)
        self.losses: dict[str, torch.Tensor] = {}
        self.weight_A: torch.Tensor | None = None
        # the patch positions have their own generator, checkpointed per rank like CycleGAN's pools
        self.patch_rng = torch.Generator().manual_seed(seed * 1000 + rank + 17)

    # ----------------------------------------------------------------------------------- the step
    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def set_input(self, batch: dict[str, torch.Tensor]) -> None:
        nb = self.device.type == "cuda"  # uint8 crops (the trainer's CUDA path) are normalised here
        self.real_A = normalise_batch(batch["A"].to(self.device, non_blocking=nb), self.memory_format)
        self.real_B = normalise_batch(batch["B"].to(self.device, non_blocking=nb), self.memory_format)
        w = batch.get("A_weight")
        self.weight_A = w.to(self.device, non_blocking=nb) if w is not None else None

    def forward(self) -> None:
        """G(a) (and G(b) for identity NCE) in one batch (exact: instance norm is per sample). The
        encoder features of the inputs, PatchNCE's keys, come out of the same pass: the authors'
        code encodes the inputs again, which gives the same values (keys carry no gradient)."""
        n = self.real_A.shape[0]
        x = torch.cat([self.real_A, self.real_B]) if self.nce_idt else self.real_A
        fake, feats = self.generate(x, self.nce_layers)
        keys = [f.detach() for f in feats]
        if self.nce_idt:
            self.fake_B, self.idt_B = fake.split(n)
            self.keys_A, self.keys_B = [k[:n] for k in keys], [k[n:] for k in keys]
        else:
            self.fake_B, self.idt_B, self.keys_A, self.keys_B = fake, None, keys, None

    def nce(self, feat_k: list[torch.Tensor], tgt: torch.Tensor) -> torch.Tensor:
        """PatchNCE between an input (its encoder features `feat_k`) and its translation `tgt`,
        averaged over the encoder layers."""
        feat_q = self.G_AB.encode(tgt, self.nce_layers)
        k, ids = self.F(feat_k, self.opt.nce_patches, generator=self.patch_rng)
        q, _ = self.F(feat_q, self.opt.nce_patches, ids)
        return sum(patch_nce_loss(qi, ki, self.opt.nce_tau) for qi, ki in zip(q, k)) / len(q)

    def backward_D(self) -> None:
        n = self.real_B.shape[0]
        with self.autocast():
            real_pred, fake_pred = self.disc_step(torch.cat([self.real_B, self.fake_B.detach()])).split(n)
            loss = 0.5 * (self.criterionGAN(real_pred, True) + self.criterionGAN(fake_pred, False))
            if self.opt.gan_mode == "wgangp":
                loss = loss + gradient_penalty(self.D_B, self.real_B, self.fake_B, self.opt.lambda_gp)
        self.scaler.scale(loss).backward()
        self.losses["D_B"] = loss

    def backward_G(self) -> None:
        with self.autocast():
            terms = {"G_GAN": self.criterionGAN(self.D_B(self.fake_B), True, for_discriminator=False)}
            if self.lambda_nce > 0:
                nce = self.nce(self.keys_A, self.fake_B)
                terms["NCE"] = nce * self.lambda_nce
                if self.nce_idt:
                    terms["NCE_Y"] = self.nce(self.keys_B, self.idt_B) * self.lambda_nce
                    terms["NCE"] = 0.5 * terms["NCE"]
                    terms["NCE_Y"] = 0.5 * terms["NCE_Y"]
            lam_s = getattr(self.opt, "lambda_structure", 0.0)
            if lam_s > 0:
                terms["structure_A"] = structure_loss(self.real_A, self.fake_B, self.weight_A) * lam_s
        terms["G"] = sum(terms.values())
        self.scaler.scale(terms["G"]).backward()
        self.losses.update(terms)

    def optimize_parameters(self) -> None:
        """As the authors' CUTModel: forward, D step, then G (and F) step with D fixed."""
        with self.autocast():
            self.forward()
        self.optimizer_D.zero_grad(set_to_none=True)
        self.backward_D()
        self.scaler.step(self.optimizer_D)
        for p in self.D_B.parameters():
            p.requires_grad_(False)
        self.optimizer_G.zero_grad(set_to_none=True)
        self.backward_G()
        self.scaler.step(self.optimizer_G)
        for p in self.D_B.parameters():
            p.requires_grad_(True)
        self.scaler.update()
        for s in self.schedulers:
            s.step()

    # ----------------------------------------------------------------------------------- reporting
    def loss_values(self) -> dict[str, float]:
        return {k: float(v.detach()) for k, v in self.losses.items()}

    def visuals(self) -> list[torch.Tensor]:
        """First item of the batch: A, G(A) over B, G(B) as (3,H,W) in [-1,1]."""
        idt = self.idt_B
        if idt is None:
            with torch.no_grad(), self.autocast():
                idt = self.G_AB(self.real_B[:1])
        return [t[0].detach().float().cpu() for t in (self.real_A, self.fake_B, self.real_B, idt)]

    def networks(self) -> dict[str, nn.Module]:
        return {"G_AB": self.G_AB, "D_B": self.D_B, "F": self.F}

    # --------------------------------------------------------------------------------- checkpoints
    def pool_states(self) -> dict[str, Any]:
        """This rank's sampling state (CUT has no image pool: D sees the current fakes)."""
        return {"patch_rng": self.patch_rng.get_state()}

    def load_pool_states(self, state: dict[str, Any]) -> None:
        if "patch_rng" in state:
            self.patch_rng.set_state(state["patch_rng"])
