"""PyTorch's CPU F.batch_norm backward reads a strided (non-contiguous) weight as if it were
contiguous: with weight = buffer[::2] the input gradient is NaN (here the buffer's gaps hold NaN,
as in convbn-verify's "strided" layout; with other gap values it is silently wrong). It shows on
the channels-last path of the kernel, taken when the input and grad_out are both
channels-last-contiguous, which every (N, C, 1, 1) tensor is.

Workaround: pass weight.contiguous().

Exit status: 1 while the bug is present, 0 once PyTorch computes the right gradient.
Needs only torch: python docs/upstream/cpu-batch-norm-strided-weight.py"""

import sys

import torch
import torch.nn.functional as F

torch.manual_seed(0)
x = torch.randn(2, 3, 1, 1, requires_grad=True)
buffer = torch.full((6,), float("nan"))
buffer[::2] = torch.tensor([0.5, 1.0, 2.0])
weight = buffer[::2].detach().requires_grad_(True)  # strided: stride 2, gaps hold NaN
bias = torch.zeros(3, requires_grad=True)
grad_out = torch.randn(2, 3, 1, 1)

F.batch_norm(x, None, None, weight, bias, True, 0.1, 1e-5).backward(grad_out)
x_ref = x.detach().clone().requires_grad_(True)
F.batch_norm(x_ref, None, None, weight.detach().contiguous(), None, True, 0.1, 1e-5).backward(
    grad_out
)

print(f"torch {torch.__version__}")
print(f"grad_x with a strided weight:    {x.grad.flatten().tolist()}")
print(f"grad_x with weight.contiguous(): {x_ref.grad.flatten().tolist()}")
if torch.allclose(x.grad, x_ref.grad, atol=1e-6, rtol=1e-5):
    print("FIXED: the strided weight gives the right input gradient")
    sys.exit(0)
print("BUG PRESENT: the strided weight gives a wrong input gradient")
sys.exit(1)
