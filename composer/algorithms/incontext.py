"""An in-context transformer over the support set: every support pair and every query is a token.

Support tokens embed ``(encoder(x), y)``; query tokens embed ``encoder(x)`` and a learned query
marker. An attention mask lets every token attend to the support tokens only, so (no positional
encoding) predictions are invariant to the order of the support set and each query's prediction
depends on the support set and on that query alone. One batched call serves all tasks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metacompose.algorithms.context_learner import ContextLearner, Likelihood, context_learner
from metacompose.graph import ModuleGraph
from metacompose.modules.sizes import check_sizes


def support_only_mask(k: int, n: int, device=None) -> torch.Tensor:
    """``(n, n)`` boolean attention mask: token ``i`` may attend to token ``j`` iff ``j < k``."""
    return (torch.arange(n, device=device) < k).expand(n, n)


def _check_heads(*, width: int, heads: int) -> None:
    """Raise ``ValueError`` naming the size below 1, or ``width`` not divisible by ``heads``."""
    check_sizes(width=width, heads=heads)
    if width % heads:
        raise ValueError(f"width={width} must be divisible by heads={heads}")


class AttentionBlock(nn.Module):
    """Pre-norm transformer block: masked multi-head self-attention, then a 2-layer MLP.

    Args:
        width: token width ``d``; heads: attention heads (dividing ``d``); ff: MLP hidden width.
    """

    def __init__(self, *, width: int, heads: int, ff: int) -> None:
        super().__init__()
        check_sizes(ff=ff)
        _check_heads(width=width, heads=heads)
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, ff), nn.GELU(), nn.Linear(ff, width))

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(T, N, d)`` tokens, ``(N, N)`` boolean mask (True: may attend) -> ``(T, N, d)``."""
        t, n, d = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(t, n, 3, self.heads, d // self.heads).unbind(2)
        a = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask
        )
        h = h + self.out(a.transpose(1, 2).reshape(t, n, d))
        return h + self.mlp(self.norm2(h))


class InContextTransformer(nn.Module):
    """``(support_x, support_feat, query_x) -> (T, Q, out)`` by masked attention over tokens.

    Args:
        encoder: per-example input encoder (``ModuleGraph``, ``(B, *in) -> (B, F)``), e.g. an MLP
            for vectors or the conv network of :func:`metacompose.models.conv_graph` for images.
        label_dim: width of a support target as a token input (D, or N classes one-hot).
        out_dim: outputs per query.
        width: token width; heads: attention heads; layers: transformer blocks; ff: MLP width.

    Raises:
        ValueError: a size below 1 or ``width`` not divisible by ``heads`` (the message names the
            argument and its value).
    """

    def __init__(
        self,
        *,
        encoder: ModuleGraph,
        label_dim: int,
        out_dim: int,
        width: int = 64,
        heads: int = 4,
        layers: int = 3,
        ff: int = 128,
    ) -> None:
        super().__init__()
        check_sizes(layers=layers, ff=ff)
        _check_heads(width=width, heads=heads)
        self.encoder = encoder
        self.embed_x = nn.Linear(encoder.out_space.dim, width)
        self.embed_y = nn.Linear(label_dim, width)
        self.query_marker = nn.Parameter(torch.zeros(width))
        self.blocks = nn.ModuleList(
            [AttentionBlock(width=width, heads=heads, ff=ff) for _ in range(layers)]
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, out_dim)

    def forward(self, support_x, support_feat, query_x) -> torch.Tensor:
        t, k, q = support_x.shape[0], support_x.shape[1], query_x.shape[1]
        x = torch.cat([support_x, query_x], 1).flatten(0, 1)  # (T * (K + Q), *in)
        h = self.embed_x(self.encoder(x)).view(t, k + q, -1)
        h = torch.cat([h[:, :k] + self.embed_y(support_feat), h[:, k:] + self.query_marker], 1)
        mask = support_only_mask(k, k + q, device=h.device)
        for block in self.blocks:
            h = block(h, mask)
        return self.head(self.norm(h[:, k:]))


def incontext_learner(
    *,
    encoder: ModuleGraph,
    targets: int,
    classification: bool,
    likelihood: Likelihood = "mse",
    width: int = 64,
    heads: int = 4,
    layers: int = 3,
    ff: int = 128,
    min_shots: int | None = None,
    nll_beta: float | None = None,
) -> ContextLearner:
    """The ``algo.name: incontext`` learner; ``algo.args`` sets the keyword arguments after
    ``classification`` (``encoder``, ``targets``, ``classification`` come from the run config).

    Args:
        targets: regression target width D, or the number of classes N.
        classification: N-way classification (cross-entropy, labels enter one-hot).
        likelihood: regression loss: ``"mse"`` or ``"gaussian"`` (predicted mean and variance).
        min_shots: see :class:`~metacompose.algorithms.context_learner.ContextLearner`.
        nll_beta: ``likelihood="gaussian"`` only: beta-NLL's beta in ``[0, 1]``; unset: 0, the
            plain NLL. The shipped configs use 0.5, which keeps the mean learning where the
            predicted variance is large (the plain NLL lets a CNP settle on a large variance).
    """
    return context_learner(
        predictor=InContextTransformer,
        encoder=encoder,
        targets=targets,
        classification=classification,
        likelihood=likelihood,
        min_shots=min_shots,
        nll_beta=nll_beta,
        width=width,
        heads=heads,
        layers=layers,
        ff=ff,
    )
