"""The data feed of the SGD loop: inputs and targets drawn per chain, one page at a time.

Inputs and targets do not depend on theta, so they are drawn per chain one *page* at a time
(`PAGE_SAMPLES` samples = max(1, PAGE_SAMPLES // b) steps) and stacked over chains; the page is
part of the stream layout (like a spawn key): it depends on b only, never on R or `steps`. Chain r
draws only from its own streams: training set and online inputs (`data`), teacher noise
(`teacher`), minibatch indices (`sgd`). Every target comes from `teacher.sample(p, y, rng, x=x)`; with a
KD temperature (E22) the label and the soft part come apart (`engine.kd`) and a page's targets are `KDTargets`.

Two feeds (`RunConfig.feed`): "numpy", the reference streams (every committed figure), and "torch"
(`TorchFeed`), which draws the online inputs, labels and targets with per-chain torch generators
(`rng.torch_feed_generators`) in the run's dtype: the same laws, other random numbers, no numpy on
the hot path for tasks with class Gaussians and teachers with a torch form (`Teacher.torch_form`);
anything else falls back to the chain's numpy streams. Pages are drawn on the CPU and copied to the
run's device, so a seed gives the same inputs and targets on every device.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from synthetic.base import Task

from ..config import DataFeed, Regime, Sampling
from ..rng import Streams, torch_feed_generators
from ..students.kd import KDTargets
from ..students.linear import torch_features
from ..teachers import TargetSource, Teacher
from .config import RunConfig
from .kd import KDDraw

PAGE_SAMPLES = 1024


class Feed:
    """Pages of minibatches `x [L, R, b, d]`, `t [L, R, b, K]`; chain r draws from its own streams.

    A page holds `steps_per_page` steps of every chain, laid out step-major so that each step's
    minibatch `[R, b, ...]` is contiguous. Memory: R * PAGE_SAMPLES * (d + K) numbers of the run's
    dtype per page (two pages with prefetch), e.g. ~140 MB for R = 1000 on the paper task in float32.
    """

    def __init__(self, cfg: RunConfig, task: Task, teacher: Teacher, streams: Sequence[Streams], dtype: torch.dtype):
        self.cfg, self.task, self.teacher, self.streams, self.dtype = cfg, task, teacher, streams, dtype
        self.b = cfg.batch
        self.steps_per_page = max(1, PAGE_SAMPLES // self.b)
        # E22: the Hinton loss at a student temperature needs the label and the soft part apart (`engine.kd`)
        self.kd = None if cfg.kd_temperature is None else KDDraw(teacher, cfg.kd_temperature)
        self.law = teacher if self.kd is None else self.kd.base  # the law whose `sample` the feed calls
        if cfg.regime == Regime.FINITE:
            x_train, self.sources, self.queues, self.labels = [], [], [], []
            for s in streams:
                x, y = task.sample(cfg.n, s.data)
                x_train.append(x)
                self.labels.append(y)
                law = teacher if self.kd is None else self.kd.base
                self.sources.append(TargetSource(law, task.bcp(x), y, cfg.noise, s.teacher, x=x))
                self.queues.append(np.zeros(0, dtype=np.int64))
            self.x_train = torch.as_tensor(np.stack(x_train), dtype=dtype)  # [R, n, d]

    def indices(self, r: int, m: int) -> np.ndarray:
        """The next m training-set indices of chain r (with replacement, or successive epochs)."""
        s = self.streams[r]
        if self.cfg.sampling == Sampling.REPLACEMENT:
            return s.sgd.integers(0, self.cfg.n, size=m)
        q = self.queues[r]  # epoch shuffling: successive permutations, batches may span epochs
        while len(q) < m:
            q = np.concatenate([q, s.sgd.permutation(self.cfg.n)])
        self.queues[r] = q[m:]
        return q[:m]

    def next_page(self) -> tuple[torch.Tensor, torch.Tensor | KDTargets]:
        """The next page: inputs `[L, R, b, d]` and targets `[L, R, b, K]` in the run's dtype
        (`KDTargets` of that shape with a KD temperature)."""
        L, b, R = self.steps_per_page, self.b, len(self.streams)
        m = L * b
        np_dtype = torch.empty(0, dtype=self.dtype).numpy().dtype  # cast once, on assignment
        T = np.empty((L, R, b, self.task.num_classes), dtype=np_dtype)
        hard = None if self.kd is None else np.empty_like(T)
        if self.cfg.regime == Regime.ONLINE:
            X = np.empty((L, R, b, self.task.dim), dtype=np_dtype)
            for r, s in enumerate(self.streams):
                # everything per chain, even pure functions of x: BLAS results for a row can depend
                # on how many rows are in the call, and chain r must not depend on R
                x, y = self.task.sample(m, s.data)
                X[:, r] = x.reshape(L, b, -1)
                h, t = self.draw_targets(x, y, s)
                T[:, r] = t.reshape(L, b, -1)
                if h is not None:
                    hard[:, r] = h.reshape(L, b, -1)
            return torch.from_numpy(X), self._targets(hard, T)
        idx = np.stack([self.indices(r, m) for r in range(R)])  # [R, m]
        for r, (src, s) in enumerate(zip(self.sources, self.streams)):
            if self.kd is not None:
                h, t = self.kd.split(src(idx[r], s.teacher), self.labels[r][idx[r]], self.task.num_classes)
                hard[:, r], T[:, r] = h.reshape(L, b, -1), t.reshape(L, b, -1)
                continue
            T[:, r] = src(idx[r], s.teacher).reshape(L, b, -1)
        x = self.x_train[torch.arange(R)[:, None], torch.from_numpy(idx)]
        return x.reshape(R, L, b, -1).transpose(0, 1).contiguous(), self._targets(hard, T)

    def draw_targets(self, x: np.ndarray, y: np.ndarray, s: Streams) -> tuple[np.ndarray | None, np.ndarray]:
        """Fresh targets `[m, K]` for one chain's inputs x `[m, d]` and labels y `[m]` from its teacher
        stream: (None, t), or (hard, soft) with a KD temperature. p = task.bcp(x) is computed only
        for a law that reads it (`Teacher.reads_p`; otherwise a uniform placeholder of its shape)."""
        K = self.task.num_classes
        p = self.task.bcp(x) if self.law.reads_p else np.full((len(x), K), 1.0 / K)
        if self.kd is not None:
            return self.kd.draw(p, y, s.teacher, x)
        return None, self.teacher.sample(p, y, s.teacher, x=x)

    def _targets(self, hard: np.ndarray | None, T: np.ndarray) -> torch.Tensor | KDTargets:
        return torch.from_numpy(T) if hard is None else KDTargets(torch.from_numpy(hard), torch.from_numpy(T), self.kd.T)


def torch_log_bcp(task: Task) -> tuple[torch.Tensor, torch.Tensor, str] | None:
    """(A `[F, K]`, c `[K]` float64, features) with log p(x) = log_softmax(phi(x) A + c) (the task's
    `logit_weights` W = [A^T | c], linear features first), or None when the task declares neither."""
    for features in ("linear", "quadratic"):
        try:
            W = torch.from_numpy(np.asarray(task.logit_weights(features), dtype=np.float64))
        except (ValueError, NotImplementedError):
            continue
        return W[:, :-1].T.contiguous(), W[:, -1].clone(), features
    return None


class TorchFeed(Feed):
    """The torch data feed (module docstring): online pages drawn with chain r's torch generators.

    Inputs: y ~ Cat(pi), x = mu_y + sqrt(v_y) z, z ~ N(0, I) in the run's dtype, from the task's
    `class_gaussians` (else the task's numpy `sample` from the chain's data stream). Targets: the
    teacher's `draw_torch` with p from the task's `logit_weights` (in float64, cast), else its numpy
    `sample` from the chain's teacher stream. The finite regime is the numpy feed's (its hot path is
    already a gather of the drawn training set).
    """

    def __init__(self, cfg: RunConfig, task: Task, teacher: Teacher, streams: Sequence[Streams], dtype: torch.dtype,
                 chains: Sequence[int]):
        super().__init__(cfg, task, teacher, streams, dtype)
        if len(chains) != len(streams):
            raise ValueError(f"chains must give one index per stream, got {len(chains)} for {len(streams)}")
        self.generators = [torch_feed_generators(cfg.seed, int(c)) for c in chains]
        gauss = task.class_gaussians()
        self.gauss = None if gauss is None else (
            torch.tensor(np.array(gauss[0]), dtype=torch.float64), torch.tensor(np.array(gauss[1]), dtype=dtype),
            torch.as_tensor(np.sqrt(np.broadcast_to(gauss[2], np.shape(gauss[1]))), dtype=dtype))
        self.bcp_weights = torch_log_bcp(task) if self.law.reads_p else None
        self.torch_targets = self.kd is None and self.law.torch_form and (self.bcp_weights is not None or not self.law.reads_p)

    def next_page(self) -> tuple[torch.Tensor, torch.Tensor | KDTargets]:
        if self.cfg.regime != Regime.ONLINE:
            return super().next_page()
        L, b, R, K = self.steps_per_page, self.b, len(self.streams), self.task.num_classes
        X = torch.empty(L, R, b, self.task.dim, dtype=self.dtype)
        T = torch.empty(L, R, b, K, dtype=self.dtype)
        hard = None if self.kd is None else torch.empty_like(T)
        for r in range(R):
            x, y = self._inputs(r, L * b)
            X[:, r] = x.view(L, b, -1)
            h, t = self._torch_targets(r, x, y)
            T[:, r] = t.view(L, b, -1)
            if h is not None:
                hard[:, r] = h.view(L, b, -1)
        return X, (T if hard is None else KDTargets(hard, T, self.kd.T))

    def _inputs(self, r: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Chain r's next m inputs `[m, d]` (run dtype) and labels `[m]` (int64)."""
        if self.gauss is None:
            x, y = self.task.sample(m, self.streams[r].data)
            return torch.from_numpy(x).to(self.dtype), torch.from_numpy(y)
        pi, mu, sd = self.gauss
        gen = self.generators[r][0]
        y = torch.multinomial(pi, m, replacement=True, generator=gen)
        z = torch.randn(m, mu.shape[1], generator=gen, dtype=self.dtype)
        return torch.addcmul(mu[y], sd[y], z), y

    def _torch_targets(self, r: int, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Chain r's targets for (x, y): the teacher's torch form, or its numpy `sample` (module docstring)."""
        K = self.task.num_classes
        if self.torch_targets:
            p = None
            if self.bcp_weights is not None:
                A, c, features = self.bcp_weights
                p = torch.softmax(torch_features(x.to(torch.float64), features) @ A + c, dim=-1)  # one chain per call
            return None, self.law.draw_torch(p, y, self.generators[r][1], x=x, num_classes=K, dtype=self.dtype)
        h, t = self.draw_targets(x.to(torch.float64).numpy(), y.numpy(), self.streams[r])
        return (None if h is None else torch.from_numpy(h).to(self.dtype)), torch.from_numpy(t).to(self.dtype)


def make_feed(cfg: RunConfig, task: Task, teacher: Teacher, streams: Sequence[Streams], dtype: torch.dtype,
              chains: Sequence[int]) -> Feed:
    """The data feed the configuration names (`RunConfig.feed`)."""
    if cfg.feed == DataFeed.TORCH:
        return TorchFeed(cfg, task, teacher, streams, dtype, chains)
    return Feed(cfg, task, teacher, streams, dtype)
