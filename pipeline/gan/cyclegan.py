"""The CycleGAN model, whose training step reads like the paper (the loop is training_loop.py).

`CycleGAN(opt, device)` holds G_AB (A→B, the paper's G), G_BA (B→A, the paper's F), D_A, D_B,
their Adam optimisers, linear-decay schedules, image pools and (fp16) grad scaler.
`optimize_parameters()` = forward → backward_G → step G → backward_D → step D, as the original.

Speed without changing the maths: instance norm is per sample, so the generator passes that share
a network are batched together (G_AB on [a, b] gives G(a) and the identity G(b) at once) and each
discriminator scores [real, fake] in one call; Adam is fused. bf16/fp16 autocast, channels_last and
torch.compile are switches in the config ("auto" precision and channels_last: see accel.py).
torch.compile compiles each network (twins share the compiled code), not the step: a fraction of
the compile time of one graph per step, and the step stays capturable. On CUDA the whole step (both
updates, the pool, the optimisers) is captured once as a CUDA graph and replayed (graphs.py,
cuda_graphs "auto"); inputs arrive in static buffers, the pool's draws are made on the host first
and the learning rate is a device tensor filled from the same schedule, so it computes what the
eager step computes. uint8 batches (N,H,W,3) are normalised on the device.
`opt` is any object with GanConfig's attribute names
(pydantic is not needed to train, e.g. on a bare GPU host).
"""

from __future__ import annotations

import itertools
import math
from contextlib import nullcontext
from typing import Any, Protocol

import torch
from torch import nn

from pipeline.gan.accel import amp_dtype, resolve_precision, use_channels_last, use_cuda_graphs
from pipeline.gan.graphs import StepGraph
from pipeline.gan.losses import GANLoss, cyclegan_objective, gradient_penalty
from pipeline.gan.networks import PatchDiscriminator, ResnetGenerator, init_weights
from pipeline.gan.pool import ImagePool


class GanOptions(Protocol):
    ngf: int
    ndf: int
    n_blocks: int
    n_layers_d: int
    gan_mode: str
    lambda_cycle: float
    lambda_identity: float
    lambda_gp: float
    pool_size: int
    lr: float
    beta1: float
    iterations: int
    decay_from: float
    precision: str  # auto | fp32 | bf16 | fp16
    channels_last: bool | str  # auto | True | False
    compile: bool
    cuda_graphs: bool | str  # auto | True | False (read with getattr: older option objects lack it)
    upsample: str  # transpose | resize
    lambda_structure: float
    structure_box_weight: float


def normalise_batch(x: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
    """(N,H,W,3) uint8 -> (N,3,H,W) float in [-1,1] (the same float ops as data.to_tensor, so the
    same values); float input passes through. Either in the given memory format."""
    if x.dtype == torch.uint8:
        x = x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    return x.contiguous(memory_format=memory_format)


class LinearDecay:
    """lr factor: 1 for the first decay_from·total steps, then linear to 0 at `total`."""

    def __init__(self, total: int, decay_from: float):
        self.total, self.start = total, int(round(total * decay_from))

    def __call__(self, step: int) -> float:
        if step < self.start:
            return 1.0
        return max(0.0, 1.0 - (step - self.start) / max(1, self.total - self.start))


class Generators(nn.Module):
    """Both generators as one module, so DDP sees a single forward per step."""

    def __init__(self, G_AB: nn.Module, G_BA: nn.Module):
        super().__init__()
        self.G_AB, self.G_BA = G_AB, G_BA

    def forward(self, real_A: torch.Tensor, real_B: torch.Tensor, identity: bool) -> tuple[torch.Tensor, ...]:
        n = real_A.shape[0]
        if identity:  # G_AB(a) and G_AB(b) in one batch (exact: instance norm is per sample)
            fake_B, idt_B = self.G_AB(torch.cat([real_A, real_B])).split(n)
            fake_A, idt_A = self.G_BA(torch.cat([real_B, real_A])).split(n)
        else:
            fake_B, fake_A, idt_A, idt_B = self.G_AB(real_A), self.G_BA(real_B), None, None
        rec_A = self.G_BA(fake_B)
        rec_B = self.G_AB(fake_A)
        return fake_B, rec_A, idt_B, fake_A, rec_B, idt_A


class Discriminators(nn.Module):
    """D_A judges A images, D_B judges B images; each scores [real, fake] in one batch."""

    def __init__(self, D_A: nn.Module, D_B: nn.Module):
        super().__init__()
        self.D_A, self.D_B = D_A, D_B

    def forward(self, real_A, fake_A, real_B, fake_B) -> tuple[torch.Tensor, ...]:
        n = real_A.shape[0]
        real_pred_A, fake_pred_A = self.D_A(torch.cat([real_A, fake_A])).split(n)
        real_pred_B, fake_pred_B = self.D_B(torch.cat([real_B, fake_B])).split(n)
        return real_pred_A, fake_pred_A, real_pred_B, fake_pred_B


class Checkpointed:
    """What every translator saves and restores besides its pools: networks(), both optimizers,
    the LR schedulers and the grad scaler (one layout, so resume works the same for each)."""

    optimizer_G: torch.optim.Optimizer
    optimizer_D: torch.optim.Optimizer
    schedulers: list[Any]
    scaler: Any

    def networks(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    @property
    def lr(self) -> float:
        return self.optimizer_G.param_groups[0]["lr"]

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed step needs, except the pools (see pool_states)."""
        return {
            "models": {n: m.state_dict() for n, m in self.networks().items()},
            "optimizers": {"G": self.optimizer_G.state_dict(), "D": self.optimizer_D.state_dict()},
            "schedulers": [s.state_dict() for s in self.schedulers],
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        nets = self.networks()
        for n, sd in state["models"].items():
            nets[n].load_state_dict(sd)
        self.optimizer_G.load_state_dict(state["optimizers"]["G"])
        self.optimizer_D.load_state_dict(state["optimizers"]["D"])
        for s, sd in zip(self.schedulers, state["schedulers"]):
            s.load_state_dict(sd)
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


class CycleGAN(Checkpointed):
    def __init__(self, opt: GanOptions, device: str | torch.device = "cpu", *, seed: int = 0, rank: int = 0,
                 world_size: int = 1, step_mode: str | None = None):
        """step_mode: "eager" (today's step), "graph" (static buffers, captured as a CUDA graph) or
        "static" (the graph's step run uncaptured: for tests on a CPU); None = from opt.cuda_graphs."""
        self.opt, self.device = opt, torch.device(device)
        self.world_size = world_size
        torch.manual_seed(seed)  # same initial weights on every rank (DDP also broadcasts them)
        up = getattr(opt, "upsample", "transpose")
        self.G_AB = init_weights(ResnetGenerator(3, 3, opt.ngf, opt.n_blocks, upsample=up))
        self.G_BA = init_weights(ResnetGenerator(3, 3, opt.ngf, opt.n_blocks, upsample=up))
        self.D_A = init_weights(PatchDiscriminator(3, opt.ndf, opt.n_layers_d))
        self.D_B = init_weights(PatchDiscriminator(3, opt.ndf, opt.n_layers_d))
        self.precision = resolve_precision(opt.precision, self.device)
        cl = use_channels_last(opt.channels_last, self.device)
        self.memory_format = torch.channels_last if cl else torch.contiguous_format
        self.generators = Generators(self.G_AB, self.G_BA).to(self.device, memory_format=self.memory_format)
        self.discriminators = Discriminators(self.D_A, self.D_B).to(self.device,
                                                                     memory_format=self.memory_format)

        self.gen_step: nn.Module = self.generators
        self.disc_step: nn.Module = self.discriminators
        if world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.gen_step = DDP(self.generators, device_ids=ids, broadcast_buffers=False)
            self.disc_step = DDP(self.discriminators, device_ids=ids, broadcast_buffers=False)
        self.D_A_plain, self.D_B_plain = self.D_A, self.D_B  # used in the G step (no D gradients)
        if step_mode is None:
            graphs = use_cuda_graphs(getattr(opt, "cuda_graphs", "auto"), self.device, world_size=world_size,
                                     precision=self.precision, gan_mode=opt.gan_mode)
            step_mode = "graph" if graphs else "eager"
        if step_mode not in ("eager", "graph", "static"):
            raise ValueError(f"step_mode must be eager, graph or static, got {step_mode!r}")
        self.step_mode = step_mode
        if opt.compile:
            # Each network compiled in place (state_dict keys unchanged): G_AB/G_BA and D_A/D_B share
            # their code, so one compiled graph per input shape serves both twins. dynamic=False: the
            # batch-2N identity pass and the batch-N passes get static kernels, not symbolic shapes.
            for net in (self.G_AB, self.G_BA, self.D_A, self.D_B):
                net.compile(dynamic=False)

        # fused Adam: one kernel for all parameters (CUDA, and CPU since torch 2.4: 3x faster step here)
        adam = dict(lr=opt.lr, betas=(opt.beta1, 0.999), fused=True)
        if step_mode == "graph":
            adam["capturable"] = True  # fused Adam keeps its state on the device either way
        g_params = itertools.chain(self.G_AB.parameters(), self.G_BA.parameters())
        d_params = itertools.chain(self.D_A.parameters(), self.D_B.parameters())
        self.optimizer_G = torch.optim.Adam(g_params, **adam)
        self.optimizer_D = torch.optim.Adam(d_params, **adam)
        decay = LinearDecay(opt.iterations, opt.decay_from)
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, decay)
                           for o in (self.optimizer_G, self.optimizer_D)]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.amp_dtype = amp_dtype(self.precision)
        self.criterionGAN = GANLoss(opt.gan_mode)
        self.fake_A_pool = ImagePool(opt.pool_size, seed=seed * 1000 + 2 * rank)
        self.fake_B_pool = ImagePool(opt.pool_size, seed=seed * 1000 + 2 * rank + 1)
        self.losses: dict[str, torch.Tensor] = {}
        self.weight_A: torch.Tensor | None = None
        if step_mode == "graph":
            for o in (self.optimizer_G, self.optimizer_D):
                o._warned_capturable_if_run_uncaptured = True  # warm-up steps run uncaptured on purpose
        if step_mode != "eager":
            # the step's learning rates and pool decisions, written on the host before each step
            # CUDA's fused Adam reads a float32 lr (a host float is cast to it too); the CPU one a double
            lr_dtype = torch.float32 if self.device.type == "cuda" else torch.float64
            self._lr = {o: torch.tensor(opt.lr, dtype=lr_dtype, device=self.device)
                        for o in (self.optimizer_G, self.optimizer_D)}
            self._raw: dict[str, torch.Tensor] = {}
            self._pool_plan: torch.Tensor | None = None
        self.graph = StepGraph(self.device, warmup=3, capture=step_mode == "graph",
                               before_capture=self._zero_grads, after_failure=self._zero_grads)

    # ----------------------------------------------------------------------------- the paper's step
    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def set_input(self, batch: dict[str, torch.Tensor]) -> None:
        """batch["A"], batch["B"]: (N,3,H,W) float in [-1,1], or (N,H,W,3) uint8 (normalised here, on the
        device: a quarter of the bytes to copy, and channels_last comes free)."""
        nb = self.device.type == "cuda"
        if self.step_mode == "eager":
            self.real_A = self._normalise(batch["A"].to(self.device, non_blocking=nb))
            self.real_B = self._normalise(batch["B"].to(self.device, non_blocking=nb))
            w = batch.get("A_weight")  # (N,1,H,W) structure-term weights (more inside the boxes)
            self.weight_A = w.to(self.device, non_blocking=nb) if w is not None else None
            return
        for k in ("A", "B", "A_weight"):  # static buffers: a captured step reads fixed addresses
            if k not in batch:
                continue
            x, buf = batch[k], self._raw.get(k)
            if buf is None:
                buf = self._raw[k] = torch.empty(x.shape, dtype=x.dtype, device=self.device)
            elif buf.shape != x.shape or buf.dtype != x.dtype:
                raise ValueError(f"a {self.step_mode}-mode step needs fixed batches: got {k} "
                                 f"{tuple(x.shape)} {x.dtype} after {tuple(buf.shape)} {buf.dtype}")
            buf.copy_(x, non_blocking=nb)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return normalise_batch(x, self.memory_format)

    def forward(self) -> None:
        identity = self.opt.lambda_identity > 0
        (self.fake_B, self.rec_A, self.idt_B, self.fake_A, self.rec_B, self.idt_A) = self.gen_step(
            self.real_A, self.real_B, identity)

    def backward_G(self) -> None:
        with self.autocast():
            terms = cyclegan_objective(
                self.criterionGAN, self.D_B_plain(self.fake_B), self.D_A_plain(self.fake_A),
                self.real_A, self.real_B, self.rec_A, self.rec_B, self.idt_A, self.idt_B,
                self.opt.lambda_cycle, self.opt.lambda_identity, fake_b=self.fake_B,
                structure_weight=self.weight_A, lambda_structure=getattr(self.opt, "lambda_structure", 0.0))
        self.scaler.scale(terms["G"]).backward()
        self.losses.update(terms)

    def backward_D_basic(self, pred_real: torch.Tensor, pred_fake: torch.Tensor, netD: nn.Module,
                         real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """0.5 · (L(D(real), 1) + L(D(fake), 0)), plus the gradient penalty for wgan-gp."""
        gan = self.criterionGAN
        loss = 0.5 * (gan(pred_real, True) + gan(pred_fake, False))
        if self.opt.gan_mode == "wgangp":
            loss = loss + gradient_penalty(netD, real, fake, self.opt.lambda_gp)
        return loss

    def backward_D(self) -> None:
        if self.step_mode == "eager":
            fake_A = self.fake_A_pool.query(self.fake_A)
            fake_B = self.fake_B_pool.query(self.fake_B)
        else:
            for pool, fake in ((self.fake_A_pool, self.fake_A), (self.fake_B_pool, self.fake_B)):
                pool.make_static(fake.detach())  # first (uncaptured) step only
            fake_A = self.fake_A_pool.query_static(self.fake_A, self._pool_plan[0])
            fake_B = self.fake_B_pool.query_static(self.fake_B, self._pool_plan[1])
        with self.autocast():
            real_pred_A, fake_pred_A, real_pred_B, fake_pred_B = self.disc_step(self.real_A, fake_A,
                                                                                self.real_B, fake_B)
            loss_D_A = self.backward_D_basic(real_pred_A, fake_pred_A, self.D_A, self.real_A, fake_A)
            loss_D_B = self.backward_D_basic(real_pred_B, fake_pred_B, self.D_B, self.real_B, fake_B)
        # one backward for both discriminators (they share an optimiser, as the original)
        self.scaler.scale(loss_D_A + loss_D_B).backward()
        self.losses.update(D_A=loss_D_A, D_B=loss_D_B)

    def optimize_parameters(self) -> None:
        if self.step_mode == "eager":
            self._step()
        else:  # host-side decisions for this step, then the (captured) step reads them on the device
            if not self._raw:
                raise RuntimeError("set_input before optimize_parameters")
            self._plan_pools(self._raw["A"].shape[0])
            for o, lr in self._lr.items():
                lr.fill_(o.param_groups[0]["lr"])
            self.graph(self._step)
        for s in self.schedulers:
            s.step()

    def _step(self) -> None:
        if self.step_mode != "eager":
            self.real_A, self.real_B = self._normalise(self._raw["A"]), self._normalise(self._raw["B"])
            self.weight_A = self._raw.get("A_weight")
        with self.autocast():
            self.forward()
        self.set_requires_grad([self.D_A, self.D_B], False)  # D fixed while G learns
        self.optimizer_G.zero_grad(set_to_none=True)
        self.backward_G()
        self._optimizer_step(self.optimizer_G)
        self.set_requires_grad([self.D_A, self.D_B], True)
        self.optimizer_D.zero_grad(set_to_none=True)
        self.backward_D()
        self._optimizer_step(self.optimizer_D)
        self.scaler.update()

    def _optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.step_mode == "eager":
            self.scaler.step(optimizer)
            return
        # the schedule stays a host float (state_dict, LambdaLR); the step reads it from the device
        host = [g["lr"] for g in optimizer.param_groups]
        for g in optimizer.param_groups:
            g["lr"] = self._lr[optimizer]
        try:
            optimizer.step()
        finally:
            for g, lr in zip(optimizer.param_groups, host):
                g["lr"] = lr

    def _plan_pools(self, n: int) -> None:
        """Both pools' draws for this step, host RNG -> (2, 3, N) int64 on the device."""
        plans = []
        for pool in (self.fake_A_pool, self.fake_B_pool):
            p = pool.plan(n) or [(0, 0, 0)] * n  # pool_size 0: no draws, an unused plan
            plans.append(list(zip(*p)))
        host = torch.tensor(plans, dtype=torch.long)
        if self.device.type == "cuda":
            host = host.pin_memory()  # the caching host allocator keeps it until the copy is done
        if self._pool_plan is None:
            self._pool_plan = torch.empty(host.shape, dtype=torch.long, device=self.device)
        self._pool_plan.copy_(host, non_blocking=True)

    def _zero_grads(self) -> None:
        """Before a capture (and after a failed one): no gradients, every network trainable again."""
        self.set_requires_grad([self.D_A, self.D_B], True)
        for o in (self.optimizer_G, self.optimizer_D):
            o.zero_grad(set_to_none=True)

    @staticmethod
    def set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
        for net in nets:
            for p in net.parameters():
                p.requires_grad_(flag)

    # --------------------------------------------------------------------------------- reporting
    def loss_values(self) -> dict[str, float]:
        return {k: float(v.detach()) for k, v in self.losses.items()}

    def visuals(self) -> list[torch.Tensor]:
        """First item of the batch: A, G(A), F(G(A)), B, F(B), G(F(B)) as (3,H,W) in [-1,1]."""
        seq = (self.real_A, self.fake_B, self.rec_A, self.real_B, self.fake_A, self.rec_B)
        return [t[0].detach().float().cpu() for t in seq]

    def networks(self) -> dict[str, nn.Module]:
        return {n: getattr(self, n) for n in ("G_AB", "G_BA", "D_A", "D_B")}

    # ------------------------------------------------------------------------------- checkpoints
    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.graph.reset()  # new optimizer state tensors: a captured graph would update the old ones
        super().load_state_dict(state)

    def pool_states(self) -> dict[str, Any]:
        return {"A": self.fake_A_pool.state_dict(), "B": self.fake_B_pool.state_dict()}

    def load_pool_states(self, state: dict[str, Any]) -> None:
        self.fake_A_pool.load_state_dict(state["A"], self.device)
        self.fake_B_pool.load_state_dict(state["B"], self.device)


def iteration_flops(ngf: int, n_blocks: int, ndf: int, size: int) -> float:
    """Rough FLOPs of one training iteration at batch 1 (6 G passes, 4+2 D passes, ×3 for backward)."""
    g = 2 * size * size * (3 * ngf * 49 + (ngf * 2 * ngf * 9) / 4 + (2 * ngf * 4 * ngf * 9) / 16
                           + n_blocks * 2 * (16 * ngf * ngf * 9) / 16 + (4 * ngf * 2 * ngf * 9) / 16
                           + (2 * ngf * ngf * 9) / 4 + ngf * 3 * 49)
    d = 2 * size * size * (3 * ndf * 16 / 4 + ndf * 2 * ndf * 16 / 16 + 2 * ndf * 4 * ndf * 16 / 64
                           + 4 * ndf * 8 * ndf * 16 / 64 + 8 * ndf * 16 / 64)
    return 3 * (6 * g + 6 * d) if math.isfinite(g) else float("nan")
