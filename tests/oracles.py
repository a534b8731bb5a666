"""Slow, obvious references for the students' fast paths (STYLE 3).

Each oracle has the signature of the fast method it checks, with the student first:
`oracle(student, theta, x, t)` vs `student.method(theta, x, t)`.

- `*_func`: `torch.func.vmap(grad(...))` through the student's own `log_probs` (checks the closed
  form E11 against automatic differentiation of the forward pass).
- `*_loop`: a Python loop over chains and samples with `torch.autograd`, through an independent
  forward pass written out here (numpy features from `synthetic`, explicit layers), one sample at a
  time. No vectorisation, no closed forms.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.func import grad, vmap

import synthetic
from bkd_theory.students import ACTIVATIONS, MLP, Linear, Student


def _forward_one(student: Student, flat: torch.Tensor, x: np.ndarray) -> torch.Tensor:
    """Logits `[K]` of one sample x `[d]` for one chain's parameters `[P]`, written out plainly."""
    if isinstance(student, Linear):
        xt = torch.as_tensor(synthetic.augmented(x[None], student.features.value)[0], dtype=flat.dtype)
        W = flat.reshape(student.rows, -1)
        if student.rows < student.num_classes:  # pinned gauge: class K has logit 0
            W = torch.cat([W, torch.zeros(1, W.shape[1], dtype=flat.dtype)])
        return W @ xt
    if isinstance(student, MLP):
        h = torch.as_tensor(x, dtype=flat.dtype)
        dims = (student.dim, *student.widths, student.num_classes)
        i = 0
        for layer, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
            W = flat[i : i + fan_in * fan_out].reshape(fan_out, fan_in)
            i += fan_in * fan_out
            b = flat[i : i + fan_out]
            i += fan_out
            h = W @ h + b
            if layer < len(dims) - 2:
                h = ACTIVATIONS[student.activation]()(h)
        return h
    raise TypeError(f"no oracle forward for {type(student).__name__}")


def _loss_one(student: Student, flat: torch.Tensor, x: np.ndarray, t: torch.Tensor) -> torch.Tensor:
    return -(t * torch.log_softmax(_forward_one(student, flat, x), dim=-1)).sum()


def per_sample_grads_loop(student: Student, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Python loop over chains r and samples b of autograd gradients of E1 `[R, B, P]`."""
    R, B = x.shape[:2]
    out = torch.zeros(R, B, student.num_params, dtype=theta.dtype)
    for r in range(R):
        for b in range(B):
            flat = theta[r].detach().clone().requires_grad_(True)
            loss = _loss_one(student, flat, x[r, b].detach().numpy(), t[r, b])
            (out[r, b],) = torch.autograd.grad(loss, flat)
    return out


def batch_grad_loop(student: Student, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Autograd gradient of the minibatch mean loss, one chain at a time `[R, P]`."""
    out = []
    for r in range(x.shape[0]):
        flat = theta[r].detach().clone().requires_grad_(True)
        loss = torch.stack([_loss_one(student, flat, x[r, b].numpy(), t[r, b]) for b in range(x.shape[1])]).mean()
        out.append(torch.autograd.grad(loss, flat)[0])
    return torch.stack(out)


def per_sample_grads_func(student: Student, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """`torch.func.vmap(grad)` of E1 through `student.log_probs`, over samples and chains `[R, B, P]`."""

    def loss(flat: torch.Tensor, xi: torch.Tensor, ti: torch.Tensor) -> torch.Tensor:
        return -(ti * student.log_probs(flat[None], xi[None, None])[0, 0]).sum()

    return vmap(vmap(grad(loss), in_dims=(None, 0, 0)))(theta, x, t)


def prob_jacobian_loop(student: Student, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """d q_k(x_n) / d theta by autograd, one sample and one class at a time `[N, K, P]`."""
    N, K = x.shape[0], student.num_classes
    out = torch.zeros(N, K, student.num_params, dtype=theta.dtype)
    for n in range(N):
        for k in range(K):
            flat = theta.detach().clone().requires_grad_(True)
            q = torch.softmax(_forward_one(student, flat, x[n].numpy()), dim=-1)
            (out[n, k],) = torch.autograd.grad(q[k], flat)
    return out


def hessian_loop(student: Student, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """`torch.autograd.functional.hessian` of the mean loss, summed one sample at a time `[P, P]`."""
    H = torch.zeros(student.num_params, student.num_params, dtype=theta.dtype)
    for n in range(x.shape[0]):
        f = lambda flat, n=n: _loss_one(student, flat, x[n].numpy(), t[n])  # noqa: E731
        H += torch.autograd.functional.hessian(f, theta.detach().clone())
    return H / x.shape[0]
