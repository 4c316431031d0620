"""Pictures of attention: what each generated token looked at."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt
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
