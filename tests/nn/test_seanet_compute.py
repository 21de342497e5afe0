"""SEANet compute paths: channels-last rows, reflect padding without a padded copy, cached weight-normalised weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from brainfm.nn import seanet
from brainfm.nn.seanet import (
    _LSTM,
    SEANetDecoder,
    SEANetEncoder,
    _Conv,
    _ConvTranspose,
    normalised_weight,
    to_rows,
)


def _seeded(factory, seed: int = 0):  # type: ignore[no-untyped-def]
    """Build a module with a reproducible initialisation, leaving the global torch RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.random.manual_seed(seed)
        return factory()


def _run(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a SEANet layer (channels-last rows inside) to (N, C, L)."""
    y = module(to_rows(x))
    assert y.dim() == 4 and y.shape[2] == 1
    return y[:, :, 0]


def _padded_reference(conv: _Conv, x: torch.Tensor) -> torch.Tensor:
    """The textbook computation: reflect-pad a copy of the input, then convolve."""
    left, right = conv._pads(x.shape[-1])
    mode = "reflect" if max(left, right) < x.shape[-1] else "constant"
    return F.conv1d(F.pad(x, (left, right), mode=mode), conv.conv.weight, conv.conv.bias, conv.stride)


@pytest.mark.parametrize("c_in,c_out,kernel,stride,length", [
    (1, 8, 5, 1, 512),   # first encoder convolution
    (8, 4, 3, 1, 37),    # residual block, odd length
    (8, 16, 4, 2, 64),   # down-sampling, ratio 2
    (8, 16, 16, 8, 64),  # down-sampling, ratio 8: one frame per edge
    (8, 16, 10, 5, 60),  # odd ratio: asymmetric padding (the padded copy path)
    (8, 16, 4, 2, 7),    # length not a multiple of the stride: extra right padding
    (8, 8, 5, 1, 3),     # shorter than the padding: zero padding
    (8, 8, 5, 1, 4),     # edges overlap
    (4, 4, 1, 1, 9),     # 1x1
])
def test_conv_without_padded_copy_equals_pad_then_convolve(c_in, c_out, kernel, stride, length):
    g = torch.Generator().manual_seed(0)
    conv = _seeded(lambda: _Conv(c_in, c_out, kernel, stride))
    x = torch.randn(3, c_in, length, generator=g, requires_grad=True)
    got = _run(conv, x)
    expected = _padded_reference(conv, x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # the edge frames are the ones a zero-padded convolution gets wrong: they must be right here
    probe = torch.randn(expected.shape, generator=g)
    grads = torch.autograd.grad((got * probe).sum(), [x, *conv.parameters()])
    grads_expected = torch.autograd.grad((expected * probe).sum(), [x, *conv.parameters()])
    for a, b in zip(grads, grads_expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_conv_transpose_trims_to_stride_times_length():
    g = torch.Generator().manual_seed(0)
    for kernel, stride in ((4, 2), (16, 8), (10, 5)):
        conv = _seeded(lambda kernel=kernel, stride=stride: _ConvTranspose(6, 3, kernel, stride))
        x = torch.randn(2, 6, 9, generator=g)
        full = F.conv_transpose1d(x, conv.conv.weight, conv.conv.bias, stride)
        total = kernel - stride
        left = total - total // 2
        torch.testing.assert_close(_run(conv, x), full[..., left : left + stride * 9], atol=1e-5, rtol=1e-5)


def test_lstm_reads_channels_last_rows_as_time_by_channel():
    block = _seeded(lambda: _LSTM(6, 1))
    x = torch.randn(2, 6, 9, generator=torch.Generator().manual_seed(0))
    y = x.transpose(1, 2)
    torch.testing.assert_close(_run(block, x), (block.lstm(y)[0] + y).transpose(1, 2))


def test_cached_weight_matches_the_module_and_follows_optimiser_steps():
    conv = _seeded(lambda: _Conv(4, 6, 3))
    with torch.no_grad():
        first = normalised_weight(conv.conv)
        assert normalised_weight(conv.conv) is first  # cached while g and v do not change
        torch.testing.assert_close(first[:, :, 0], conv.conv.weight)
    optimiser = torch.optim.SGD(conv.parameters(), lr=0.5)
    x = torch.randn(2, 4, 20, generator=torch.Generator().manual_seed(0))
    _run(conv, x).square().sum().backward()
    g = conv.conv.parametrizations.weight.original0
    assert g.grad is not None and g.grad.abs().sum() > 0  # gradient reaches g through the uncached path
    optimiser.step()
    with torch.inference_mode():
        after = normalised_weight(conv.conv)
        assert not torch.equal(after, first)
        torch.testing.assert_close(after[:, :, 0], conv.conv.weight)
        torch.testing.assert_close(_run(conv, x), _padded_reference(conv, x), atol=1e-5, rtol=1e-5)


def test_cached_weight_follows_load_state_dict_and_replaced_parameters():
    a, b = _seeded(lambda: _Conv(4, 6, 3), 0), _seeded(lambda: _Conv(4, 6, 3), 1)
    x = torch.randn(2, 4, 20, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = _run(a, x)
        a.load_state_dict(b.state_dict())
        torch.testing.assert_close(_run(a, x), _run(b, x))
        assert not torch.allclose(_run(a, x), before)
        a.to(torch.float64)  # new parameter tensors
        torch.testing.assert_close(_run(a, x.double()), _run(b, x).double(), atol=1e-5, rtol=1e-5)


def test_encoder_in_evaluation_after_training_steps_matches_a_fresh_copy():
    encoder = _seeded(lambda: SEANetEncoder(n_filters=4, dimension=16, lstm_layers=1))
    optimiser = torch.optim.AdamW(encoder.parameters(), lr=1e-2)
    x = torch.randn(3, 1, 512, generator=torch.Generator().manual_seed(0))
    encoder.eval()
    with torch.no_grad():
        encoder(x)  # fills the caches
    for _ in range(2):
        encoder.train()
        optimiser.zero_grad()
        encoder(x).square().mean().backward()
        optimiser.step()
        encoder.eval()
        fresh = SEANetEncoder(n_filters=4, dimension=16, lstm_layers=1).eval()
        fresh.load_state_dict(encoder.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(encoder(x), fresh(x))


@pytest.mark.parametrize("chunk_windows", [1, 3, 4])
def test_inference_in_chunks_of_windows_equals_one_batch(monkeypatch, chunk_windows):
    """Without gradients the encoder and decoder split the windows into chunks; the outputs
    (order included, remainder chunk included) equal one call over the whole batch."""
    encoder = _seeded(lambda: SEANetEncoder(n_filters=4, dimension=16, lstm_layers=1)).eval()
    decoder = _seeded(lambda: SEANetDecoder(n_filters=4, dimension=16, lstm_layers=1), seed=1).eval()
    x = torch.randn(10, 1, 512, generator=torch.Generator().manual_seed(2))
    with torch.enable_grad():  # gradients on: one call over all windows
        whole = encoder(x).detach()
        whole_rec = decoder(whole).detach()
    calls: list[int] = []
    encoder.model.register_forward_pre_hook(lambda _m, inp: calls.append(inp[0].shape[0]))
    # chunk size in windows: CHUNK_BYTES / (widest elements x 4 bytes); the encoder's widest is 4 x 512
    monkeypatch.setattr(seanet, "CHUNK_BYTES", chunk_windows * 4 * 512 * 4)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # several threads: one call
        with torch.inference_mode():
            encoder(x)
        assert calls == [10]
        calls.clear()
        torch.set_num_threads(1)  # one thread: chunks
        with torch.inference_mode():
            chunked = encoder(x)
            chunked_rec = decoder(whole)
    finally:
        torch.set_num_threads(threads)
    assert calls == [chunk_windows] * (10 // chunk_windows) + ([10 % chunk_windows] if 10 % chunk_windows else [])
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(chunked_rec, whole_rec, atol=1e-5, rtol=1e-5)
    assert chunked_rec.shape == (10, 1, 512)
