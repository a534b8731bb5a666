"""The data feed of the SGD loop: inputs and targets drawn per chain, one page at a time.

Inputs and targets do not depend on theta, so they are drawn per chain one *page* at a time
(`PAGE_SAMPLES` samples = max(1, PAGE_SAMPLES // b) steps) and stacked over chains; the page is
part of the stream layout (like a spawn key): it depends on b only, never on R or `steps`. Chain r
draws only from its own streams: training set and online inputs (`data`), teacher noise
(`teacher`), minibatch indices (`sgd`). Every target comes from `teacher.sample(p, y, rng, x=x)`; with a
KD temperature (E22) the label and the soft part come apart (`engine.kd`) and a page's targets are `KDTargets`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from synthetic.base import Task

from ..config import Regime, Sampling
from ..rng import Streams
from ..students.kd import KDTargets
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
                if self.kd is not None:
                    h, t = self.kd.draw(self.task.bcp(x), y, s.teacher, x)
                    hard[:, r], T[:, r] = h.reshape(L, b, -1), t.reshape(L, b, -1)
                    continue
                T[:, r] = self.teacher.sample(self.task.bcp(x), y, s.teacher, x=x).reshape(L, b, -1)
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

    def _targets(self, hard: np.ndarray | None, T: np.ndarray) -> torch.Tensor | KDTargets:
        return torch.from_numpy(T) if hard is None else KDTargets(torch.from_numpy(hard), torch.from_numpy(T), self.kd.T)
