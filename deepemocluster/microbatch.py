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
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from deepemocluster.engine import autocast

Outputs = tuple[torch.Tensor | None, torch.Tensor]


class SplitStep:
    """One training step's forward and backward, whole or in micro-batches of ≤ ``max_chunks``
    chunks (0: whole). ``net`` is ``model`` or its DDP wrapper (which then all-reduces once, on the
    last micro-batch)."""

    def __init__(
        self, model: nn.Module, net: nn.Module, max_chunks: int, device: torch.device, amp: bool
    ) -> None:
        self.model, self.net, self.max_chunks = model, net, max_chunks
        self.device, self.amp = device, amp
        # a split batch between forward and backward: its parts, their outputs as leaves, and
        # the random state and buffers the second pass starts from
        self._parts: tuple[torch.Tensor, ...] = ()
        self._outputs: Outputs | None = None
        self._rng: tuple = ()
        self._buffers: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> Outputs:
        """The network's (auxiliary, prediction) outputs for batch ``x``, float32. Split, they are
        leaves whose gradients ``backward`` carries on into the network."""
        x = x.to(self.device)
        count = -(-len(x) // self.max_chunks) if self.max_chunks > 0 else 1
        if count <= 1:
            self._parts = ()
            return self._run(self.net, x)
        self._parts = x.tensor_split(count)
        self._rng = _rng_state(self.device)
        self._buffers = [b.clone() for b in self.model.buffers()]
        with torch.no_grad():
            outputs = [self._run(self.model, part) for part in self._parts]
        aux = None if outputs[0][0] is None else torch.cat([o[0] for o in outputs])
        pred = torch.cat([o[1] for o in outputs])
        self._outputs = (
            None if aux is None else aux.requires_grad_(),
            pred.requires_grad_(),
        )
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
        aux_all, pred_all = self._outputs
        start, last = 0, len(self._parts) - 1
        for i, part in enumerate(self._parts):
            rows = slice(start, start + len(part))
            start += len(part)
            sync = nullcontext() if i == last else getattr(self.net, "no_sync", nullcontext)()
            with sync:
                aux, pred = self._run(self.net, part)
                pairs = [(pred, _grad(pred_all, rows))]
                if aux is not None:
                    pairs.append((aux, _grad(aux_all, rows)))
                torch.autograd.backward([p[0] for p in pairs], [p[1] for p in pairs])

    def _run(self, net: nn.Module, x: torch.Tensor) -> Outputs:
        with autocast(self.device, self.amp):
            aux, pred = net(x)
        return (None if aux is None else aux.float()), pred.float()


def _grad(leaf: torch.Tensor, rows: slice) -> torch.Tensor:
    """The loss's gradient for ``rows`` of a split output; zeros where the loss never used it."""
    return torch.zeros_like(leaf[rows]) if leaf.grad is None else leaf.grad[rows]


def _rng_state(device: torch.device) -> tuple:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(device: torch.device, state: tuple) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)
