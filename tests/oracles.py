"""Slow, obvious references for the students' fast paths (STYLE 3): ONE generic autograd oracle.

Each oracle has the signature of the method it checks, with the student first:
`oracle(student, theta, x, t)` vs `student.method(theta, x, t)`. They work for every `Student`
(registered or user-made): a Python loop over chains and samples of `torch.autograd` through the
student's own forward pass `log_probs`, one chain and one sample at a time. No vectorisation, no
closed forms, no hand-written backward. The forward passes themselves are checked against an
independent one (`reference_module`: the same weights in a plain `nn.Module`).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import grad, vmap

from bkd_theory.students import MLP, ACTIVATIONS, Linear, Student


def _log_probs_one(student: Student, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log q `[K]` of one sample x `[d]` for one chain's parameters `[P]` (the student's own forward)."""
    return student.log_probs(flat[None], x[None, None])[0, 0]


def _loss_one(student: Student, flat: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return -(t * _log_probs_one(student, flat, x)).sum()


def per_sample_grads_loop(student: Student, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Python loop over chains r and samples b of autograd gradients of E1 `[R, B, P]`."""
    R, B = x.shape[:2]
    out = torch.zeros(R, B, student.num_params, dtype=theta.dtype)
    for r in range(R):
        for b in range(B):
            flat = theta[r].detach().clone().requires_grad_(True)
            (out[r, b],) = torch.autograd.grad(_loss_one(student, flat, x[r, b], t[r, b]), flat)
    return out


def batch_grad_loop(student: Student, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Autograd gradient of the minibatch mean loss, one chain at a time `[R, P]`."""
    out = []
    for r in range(x.shape[0]):
        flat = theta[r].detach().clone().requires_grad_(True)
        loss = torch.stack([_loss_one(student, flat, x[r, b], t[r, b]) for b in range(x.shape[1])]).mean()
        out.append(torch.autograd.grad(loss, flat)[0])
    return torch.stack(out)


def per_sample_grads_func(student: Student, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """`torch.func.vmap(grad)` of E1 through `student.log_probs`, over samples and chains `[R, B, P]`."""
    return vmap(vmap(grad(lambda f, xi, ti: _loss_one(student, f, xi, ti)), in_dims=(None, 0, 0)))(theta, x, t)


def prob_jacobian_loop(student: Student, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """d q_k(x_n) / d theta by autograd, one sample and one class at a time `[N, K, P]`."""
    N, K = x.shape[0], student.num_classes
    out = torch.zeros(N, K, student.num_params, dtype=theta.dtype)
    for n in range(N):
        for k in range(K):
            flat = theta.detach().clone().requires_grad_(True)
            (out[n, k],) = torch.autograd.grad(_log_probs_one(student, flat, x[n]).exp()[k], flat)
    return out


def hessian_loop(student: Student, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """`torch.autograd.functional.hessian` of the mean loss, summed one sample at a time `[P, P]`."""
    H = torch.zeros(student.num_params, student.num_params, dtype=theta.dtype)
    for n in range(x.shape[0]):
        H += torch.autograd.functional.hessian(lambda f, n=n: _loss_one(student, f, x[n], t[n]), theta.detach().clone())
    return H / x.shape[0]


class _Pinned(nn.Module):
    """nn.Linear on the features with a fixed zero logit appended (the pinned gauge)."""

    def __init__(self, linear: nn.Linear, features) -> None:
        super().__init__()
        self.linear, self.features = linear, features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(self.features(x))
        return torch.cat([z, z.new_zeros(*z.shape[:-1], 1)], dim=-1)


class _Full(nn.Module):
    def __init__(self, linear: nn.Linear, features) -> None:
        super().__init__()
        self.linear, self.features = linear, features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x))


def reference_module(student: Student) -> tuple[nn.Module, callable]:
    """An independent `nn.Module` with the student's architecture and a map of its flat parameters
    into the module's parameter order (`named_parameters()`), for Linear and MLP students."""
    if isinstance(student, MLP):
        dims = (student.dim, *student.widths, student.num_classes)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b, dtype=student.dtype))
            if i < len(dims) - 2:
                layers.append(ACTIVATIONS[student.activation]())
        return nn.Sequential(*layers), lambda theta: theta  # same layout: W then b, layer by layer
    if isinstance(student, Linear):
        from bkd_theory.students import torch_features

        F = student.num_features
        lin = nn.Linear(F, student.rows, dtype=student.dtype)
        feats = lambda x: torch_features(x, student.features)  # noqa: E731
        module = _Pinned(lin, feats) if student.rows < student.num_classes else _Full(lin, feats)

        def to_module(theta: torch.Tensor) -> torch.Tensor:  # W [K', F+1] row-major -> (weight [K', F], bias [K'])
            W = theta.reshape(*theta.shape[:-1], student.rows, F + 1)
            return torch.cat([W[..., :F].reshape(*theta.shape[:-1], -1), W[..., F]], dim=-1)

        return module, to_module
    raise TypeError(f"no reference module for {type(student).__name__}")
