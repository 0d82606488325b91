"""Seeded random PyTorch checkpoints (NOT trained weights) for demos and tests."""

from __future__ import annotations

from pathlib import Path

from caffezoo.converters.pytorch.models import source_arch
from caffezoo.frameworks import import_torch


def random_model(card_name: str, layout: str, seed: int = 0):
    """A source model of a zoo card with seeded random weights and non-trivial BatchNorm
    statistics (`randomize_batch_norm`)."""
    torch = import_torch()
    arch = source_arch(card_name, "torchvision" if layout == "lua" else layout)
    torch.manual_seed(seed)
    model = arch.build()
    randomize_batch_norm(model, seed, arch.calib_size)
    return model


def randomize_batch_norm(model, seed: int, calib_size: int) -> None:
    """Gives every BatchNorm2d of `model` seeded random parameters and statistics; leaves the
    model in eval mode.

    Gammas (0.5-1.5) and betas (around 0) are drawn first, then the statistics are measured on
    a random batch of `calib_size` images (so activations keep a sane scale through a deep net)
    and perturbed per channel: means shifted, variances scaled by 0.5-2. A conversion that
    swapped mean and variance, ignored eps or gamma, or reordered channels cannot pass
    validation on such a model."""
    torch = import_torch()
    gen = torch.Generator().manual_seed(seed + 1)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if not bns:  # nothing to calibrate (and a model of one input size could not run at ours)
        model.eval()
        return
    with torch.no_grad():
        for m in bns:
            n = m.num_features
            m.weight.copy_(torch.empty(n).uniform_(0.5, 1.5, generator=gen))
            m.bias.copy_(0.2 * torch.randn(n, generator=gen))
            m.momentum = None  # cumulative average: one batch sets the statistics
            m.reset_running_stats()
        model.train()
        x = torch.randn(2, 3, calib_size, calib_size, generator=gen)
        model(x)
        model.eval()
        for m in bns:
            n = m.num_features
            std = m.running_var.clamp_min(1e-6).sqrt()
            m.running_mean += 0.2 * std * torch.randn(n, generator=gen)
            m.running_var *= torch.empty(n).uniform_(0.5, 2.0, generator=gen)
            m.momentum = 0.1


def save_random_checkpoint(card_name: str, layout: str, path: str | Path, seed: int = 0) -> None:
    """Write a seeded random state_dict (atomically) that `load_pytorch` reads back."""
    import io

    from caffezoo.netio import atomic_write

    torch = import_torch()
    model = random_model(card_name, layout, seed)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    atomic_write(path, buf.getvalue())
