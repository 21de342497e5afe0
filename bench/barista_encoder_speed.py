"""BaRISTA's temporal encoder, forward + backward on CPU: the shipped Conv1d against other ways to run it.

    OMP_NUM_THREADS=1 python bench/barista_encoder_speed.py [--windows 2] [--channels 78] [--repeats 7]

One batch of ``windows`` 3-s windows of ``channels`` channels (12 patches of 512 samples each,
the released encoder 1 -> 5 -> 5 -> 5 -> 5 -> 1, layer norm over time, GELU) through the same
weights four ways, alternating in one run, one thread; process CPU seconds, median of
``repeats``; outputs checked equal to the shipped path:

- ``conv1d``: the shipped :class:`brainfm.models.barista.DilatedConvEncoder` (oneDNN convolution);
- ``conv1d_native``: the same with oneDNN disabled (PyTorch's own convolution kernels);
- ``conv2d_ref``: the reference's layout, kernel (1, 3) over a (1, C, N, 512) tensor;
- ``taps_matmul``: each dilated kernel-3 convolution as one matmul over three shifted copies.

For scale, the same run also times one whole masked-latent training step (the 12-layer
released size, parcel encoding, forward + backward) on the same windows.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch.nn import functional as F

from brainfm.loading.batch import Batch
from brainfm.models import BaristaBackbone, MaskedLatentObjective
from brainfm.models.barista import DilatedConvEncoder


def _with(conv: Callable[[torch.nn.Conv1d, torch.Tensor], torch.Tensor], encoder: DilatedConvEncoder):
    def forward(x: torch.Tensor) -> torch.Tensor:
        for block in encoder.blocks:
            residual = x if block.projector is None else conv(block.projector, x)
            h = F.gelu(F.layer_norm(conv(block.conv1, x), x.shape[-1:]))
            h = F.gelu(F.layer_norm(conv(block.conv2, h), x.shape[-1:]))
            x = h + residual
        return x
    return forward


def _native(conv: torch.nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    with torch.backends.mkldnn.flags(enabled=False):
        return F.conv1d(x, conv.weight, conv.bias, padding=conv.padding, dilation=conv.dilation)


def _conv2d_ref(conv: torch.nn.Conv1d, x: torch.Tensor) -> torch.Tensor:  # (N, C, P) <-> (1, C, N, P)
    y = F.conv2d(x.transpose(0, 1).unsqueeze(0), conv.weight.unsqueeze(2), conv.bias,
                 padding=(0, conv.padding[0]), dilation=(1, conv.dilation[0]))
    return y.squeeze(0).transpose(0, 1)


def _taps(conv: torch.nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    d, k, p = conv.dilation[0], conv.weight.shape[-1], x.shape[-1]
    if k == 1:
        return torch.matmul(conv.weight[:, :, 0], x) + conv.bias[:, None]
    padded = F.pad(x, (d, d))
    taps = torch.cat([padded[..., j * d: j * d + p] for j in range(k)], 1)  # (N, k*C, P)
    weight = conv.weight.permute(0, 2, 1).reshape(conv.weight.shape[0], -1)  # (C_out, k*C), tap-major
    return torch.matmul(weight, taps) + conv.bias[:, None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=2)
    parser.add_argument("--channels", type=int, default=78)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.random.manual_seed(0)
        encoder = DilatedConvEncoder()
    x = torch.randn(args.windows * args.channels * 12, 1, 512, generator=generator)
    ways = {"conv1d": encoder, "conv1d_native": _with(_native, encoder), "conv2d_ref": _with(_conv2d_ref, encoder),
            "taps_matmul": _with(_taps, encoder)}
    with torch.no_grad():
        reference = encoder(x)
        for name, way in ways.items():
            torch.testing.assert_close(way(x), reference, atol=1e-4, rtol=1e-4, msg=name)
    b, c = args.windows, args.channels
    batch = Batch(signal=x.view(b, c, 12 * 512), channel_mask=torch.ones(b, c, dtype=torch.bool),
                  sensor_pos=torch.zeros(b, c, 6), sensor_type=torch.zeros(b, c, dtype=torch.long),
                  pos_mask=torch.ones(b, c, dtype=torch.bool), frame_ids=torch.zeros(b, c, dtype=torch.long),
                  channel_ids=torch.ones(b, c, dtype=torch.long), region_ids=torch.randint(2, 12, (b, c), generator=generator),
                  subject_ids=torch.zeros(b, dtype=torch.long), recording_ids=torch.zeros(b, dtype=torch.long),
                  start=torch.zeros(b, dtype=torch.long))
    backbone, objective = BaristaBackbone(n_regions=16), MaskedLatentObjective()
    seconds: dict[str, list[float]] = {name: [] for name in [*ways, "whole training step"]}
    for _ in range(args.repeats):
        for name, way in ways.items():
            encoder.zero_grad()
            start = time.process_time()
            way(x).square().mean().backward()
            seconds[name].append(time.process_time() - start)
        backbone.zero_grad()
        start = time.process_time()
        objective(batch, backbone=backbone)["loss"].backward()
        seconds["whole training step"].append(time.process_time() - start)
    base = statistics.median(seconds["conv1d"])
    print(f"\n{x.shape[0]} patches of 512 samples, forward + backward, CPU s (median of {args.repeats})\n")
    print("| way | CPU s | vs shipped conv1d |")
    print("|---|---|---|")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
