"""Training steps with a bounded number of chunks in the network at once (``train.micro_batch_chunks``).

A batch of the paper's size (64 utterances × 11 chunks) keeps the activations of 704 chunks alive
for its backward pass: over 2 GiB in bfloat16, 4 in float32. Splitting it into micro-batches bounds that, and small batches are also
faster on CPU (their tensors stay under glibc's mmap threshold, so freed memory is reused instead
of being unmapped and faulted in again at every step). Plain gradient accumulation would change
the method, though: the CCC loss and the Siamese pairs need the whole batch at once.

So a split step runs twice over the micro-batches:

1. without autograd, the network's outputs for the whole batch; the caller computes its losses
   on those outputs (leaf tensors), exactly as for an unsplit batch, and backward stops there;
2. each micro-batch again, with autograd, back-propagating the gradient the losses gave its rows.

The parameter gradients are those of the whole-batch losses, exactly, at the price of one extra
forward pass (a third of a step). One thing does change: BatchNorm normalises with each
micro-batch's statistics ("ghost batch normalisation", as every DDP rank already does with its
slice). The random state and BatchNorm's running statistics are restored between the passes, so
both see the same dropout masks and the running statistics are updated once per micro-batch.

A micro-batch holds whole utterances (``utterance_bounds``): under attention pooling an
utterance's prediction needs all its chunks at once. The network's outputs then come in two
kinds of rows, per chunk (auxiliary heads) and per utterance (the named A/V/D outputs), and
each micro-batch owns a slice of both.

A loss that is a mean of per-chunk terms (the cluster cross-entropy alone, as in the unlabelled
stage) needs no first pass: ``per_chunk`` runs each micro-batch once, forward and backward, and
weights its loss by its share of the batch, which sums to the whole batch's mean.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from deepemocluster.serving.inference import autocast

Outputs = tuple[torch.Tensor | None, dict[str, torch.Tensor]]


class Part(NamedTuple):
    """A micro-batch: its rows of the batch's chunks (and of the per-chunk outputs), its rows of
    the per-utterance outputs, and its utterances' chunk counts (None: one chunk each)."""

    chunks: slice
    utterances: slice
    counts: torch.Tensor | None


class SplitStep:
    """One training step's forward and backward, whole or in micro-batches of ≤ ``max_chunks``
    chunks (0: whole) that never cut an utterance. ``net`` is ``model`` or its DDP wrapper (which
    then all-reduces once, on the last micro-batch)."""

    def __init__(
        self, model: nn.Module, net: nn.Module, max_chunks: int, device: torch.device, amp: bool
    ) -> None:
        self.model, self.net, self.max_chunks = model, net, max_chunks
        self.device, self.amp = device, amp
        # a split batch between forward and backward: its chunks and parts, their outputs as
        # leaves, and the random state and buffers the second pass starts from
        self._x = torch.empty(0)
        self._parts: list[Part] = []
        self._outputs: Outputs | None = None
        self._rng: tuple = ()
        self._buffers: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, counts: np.ndarray | None = None) -> Outputs:
        """The network's outputs for batch ``x`` of utterances of ``counts`` chunks (None: one
        each), float32: (auxiliary per chunk, named A/V/D outputs per utterance). Split, they
        are leaves whose gradients ``backward`` carries on into the network."""
        x = x.to(self.device)
        parts = self._split(len(x), counts)
        if len(parts) == 1:
            self._parts = []
            return self._run(self.net, x, parts[0].counts)
        self._x, self._parts = x, parts
        self._rng = _rng_state(self.device)
        self._buffers = [b.clone() for b in self.model.buffers()]
        with torch.no_grad():
            outputs = [self._run(self.model, x[p.chunks], p.counts) for p in parts]
        aux = None if outputs[0][0] is None else torch.cat([o[0] for o in outputs])
        named = {k: torch.cat([o[1][k] for o in outputs]).requires_grad_() for k in outputs[0][1]}
        self._outputs = (None if aux is None else aux.requires_grad_(), named)
        return self._outputs

    def backward(self, loss: torch.Tensor) -> None:
        """Gradients of ``loss`` (a function of ``forward``'s outputs) into the parameters."""
        loss.backward()
        if not self._parts:
            return
        _set_rng_state(self.device, self._rng)
        with torch.no_grad():
            for buf, saved in zip(self.model.buffers(), self._buffers, strict=True):
                buf.copy_(saved)
        for i, part in enumerate(self._parts):
            with self._sync(i == len(self._parts) - 1):
                aux, named = self._run(self.net, self._x[part.chunks], part.counts)
                leaf_aux, leaf_named = self._outputs
                pairs = [(aux, leaf_aux, part.chunks)]
                pairs += [(named[k], leaf, part.utterances) for k, leaf in leaf_named.items()]
                # only the outputs the loss used: the others' parameters get no gradient, as
                # in an unsplit step
                used = [
                    (o, leaf.grad[rows])
                    for o, leaf, rows in pairs
                    if leaf is not None and leaf.grad is not None
                ]
                torch.autograd.backward([u[0] for u in used], [u[1] for u in used])
        self._x, self._parts = torch.empty(0), []

    def per_chunk(
        self,
        x: torch.Tensor,
        loss_of: Callable[[Outputs, slice], torch.Tensor],
        weight: float = 1.0,
    ) -> torch.Tensor:
        """Forward and backward of ``weight`` × a loss that is a mean over chunks, in one pass:
        ``loss_of(outputs, rows)`` is its mean over the batch's ``rows``, given their outputs.
        Returns the whole batch's (unweighted) loss, detached."""
        x = x.to(self.device)
        parts = self._split(len(x), None)
        total = torch.zeros((), device=self.device)
        for i, part in enumerate(parts):
            with self._sync(i == len(parts) - 1):
                rows = part.chunks
                out = self._run(self.net, x[rows], None)
                loss = loss_of(out, rows) * ((rows.stop - rows.start) / len(x))
                (weight * loss).backward()
            total += loss.detach()
        return total

    def _split(self, n_chunks: int, counts: np.ndarray | None) -> list[Part]:
        sizes = np.ones(n_chunks, dtype=np.int64) if counts is None else np.asarray(counts)
        bounds = utterance_bounds(sizes, self.max_chunks)
        ends = np.concatenate([[0], np.cumsum(sizes)])
        return [
            Part(
                slice(int(ends[a]), int(ends[b])),
                slice(int(a), int(b)),
                None if counts is None else torch.from_numpy(sizes[a:b]),
            )
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]

    def _sync(self, last: bool) -> AbstractContextManager:
        """Under DDP, gradients are all-reduced on the last micro-batch only."""
        return nullcontext() if last else getattr(self.net, "no_sync", nullcontext)()

    def _run(self, net: nn.Module, x: torch.Tensor, counts: torch.Tensor | None) -> Outputs:
        with autocast(self.device, self.amp):
            aux, named = net(x, counts)
        return (None if aux is None else aux.float()), {k: v.float() for k, v in named.items()}


def utterance_bounds(counts: np.ndarray, max_chunks: int) -> np.ndarray:
    """Where micro-batches of whole utterances of ``counts`` chunks start (utterance indices,
    ending with their number; ``max_chunks`` 0: one micro-batch). Each takes the utterances that
    fit in an even share of the chunks still left, as ``tensor_split`` shares rows (the same cuts
    when every count is 1), and never more than ``max_chunks`` chunks unless a single utterance
    is longer."""
    ends = np.cumsum(counts)
    total = int(ends[-1])
    if max_chunks <= 0:
        return np.array([0, len(counts)])
    n = -(-total // max_chunks)
    bounds, done = [0], 0  # done: the chunks before the next micro-batch
    while bounds[-1] < len(counts):
        share = -(-(total - done) // max(1, n - len(bounds) + 1))
        end = int(np.searchsorted(ends, done + min(share, max_chunks), side="right"))
        bounds.append(max(end, bounds[-1] + 1))
        done = int(ends[bounds[-1] - 1])
    return np.array(bounds)


def _rng_state(device: torch.device) -> tuple:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(device: torch.device, state: tuple) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)
