"""Pictures of attention: what each generated token looked at (source words or image regions)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt
from PIL import Image
from torch import Tensor


def save_attention_heatmap(
    weights: Tensor, src_labels: Sequence[str], tgt_labels: Sequence[str], path: str | Path
) -> None:
    """Write a heatmap of ``weights`` (target steps x source positions) to ``path`` (PNG)."""
    if tuple(weights.shape) != (len(tgt_labels), len(src_labels)):
        raise ValueError(
            f"attention of shape {tuple(weights.shape)} does not match "
            f"{len(tgt_labels)} target x {len(src_labels)} source labels"
        )
    fig, ax = plt.subplots(
        figsize=(1.5 + 0.35 * len(src_labels), 1.0 + 0.3 * len(tgt_labels)), dpi=100
    )
    ax.imshow(weights.float().numpy(), cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(src_labels)), labels=src_labels, rotation=90)
    ax.set_yticks(range(len(tgt_labels)), labels=tgt_labels)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def save_attention_overlay(
    image: Image.Image, attention: Tensor, words: Sequence[str], path: str | Path
) -> None:
    """Write ``image`` and, per word, ``attention`` (words x h x w region grid) stretched over it.

    One panel per word (Show, Attend and Tell, Fig. 3): brighter regions got more attention.
    """
    if attention.dim() != 3 or attention.size(0) != len(words):
        raise ValueError(
            f"attention of shape {tuple(attention.shape)} does not match {len(words)} words "
            "(expected words x h x w)"
        )
    cols = min(len(words) + 1, 6)
    rows = -(-(len(words) + 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), dpi=100, squeeze=False)
    extent = (0, image.width, image.height, 0)
    for ax in axes.flat:
        ax.axis("off")
    axes.flat[0].imshow(image)
    for ax, word, weights in zip(axes.flat[1:], words, attention.float(), strict=False):
        ax.imshow(image)
        ax.imshow(weights.numpy(), cmap="gray", alpha=0.6, extent=extent, interpolation="bilinear")
        ax.set_title(word, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
