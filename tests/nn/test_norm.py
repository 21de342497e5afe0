"""RMSNorm with the hand-written backward: the values and gradients of torch.nn.RMSNorm."""

from __future__ import annotations

import pytest
import torch

from brainfm.nn.norm import RMSNorm


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("eps", [1e-6, None])
def test_rms_norm_matches_torch_forward_and_backward(dtype, tol, eps):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(3, 5, 64, generator=g, dtype=dtype) * 3 + 0.5).requires_grad_()
    grad = torch.randn(3, 5, 64, generator=g, dtype=dtype)
    ours, theirs = RMSNorm(64, eps=eps).to(dtype), torch.nn.RMSNorm(64, eps=eps).to(dtype)
    with torch.no_grad():
        ours.weight.copy_(torch.randn(64, generator=g, dtype=dtype))
        theirs.weight.copy_(ours.weight)
    assert set(ours.state_dict()) == set(theirs.state_dict()) == {"weight"}
    y = ours(x)
    y.backward(grad)
    dx, dw = x.grad.clone(), ours.weight.grad.clone()
    x.grad = None
    expected = theirs(x)
    expected.backward(grad)
    torch.testing.assert_close(y, expected, atol=tol, rtol=tol)
    torch.testing.assert_close(dx, x.grad, atol=tol, rtol=tol)
    torch.testing.assert_close(dw, theirs.weight.grad, atol=tol * 10, rtol=tol)
    assert float(dx.abs().max()) > 0.01 and float(dw.abs().max()) > 0.01


def test_rms_norm_gradient_only_for_the_weight_and_bfloat16_fallback():
    norm = RMSNorm(16, eps=1e-6)
    x = torch.randn(4, 16)
    norm(x).sum().backward()  # input without gradient: only the weight's
    assert norm.weight.grad is not None and norm.weight.grad.shape == (16,)
    xb = x.bfloat16()
    torch.testing.assert_close(norm.bfloat16()(xb).float(), torch.nn.functional.rms_norm(x, (16,), None, 1e-6),
                               atol=0.05, rtol=0.02)
