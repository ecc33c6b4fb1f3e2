"""Per-epoch training metrics: ``metrics.csv``, ``metrics.json`` and ``metrics.png`` (loss and AP curves)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from visionkit.atomic import write_json, write_text

__all__ = ["MetricsLog"]


class MetricsLog:
    """Rows of per-epoch numbers, rewritten atomically after each epoch (rank 0 only).

    Each row holds ``epoch``, ``lr``, ``seconds``, the mean of every loss term (``loss``,
    ``loss_classifier``...) and, with a validation set, the 12 COCO numbers (``AP``, ``AP50``...).
    """

    def __init__(self, out_dir: str | Path, rows: list[dict[str, Any]] | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.rows: list[dict[str, Any]] = list(rows or [])

    def add(self, row: Mapping[str, Any]) -> None:
        self.rows = [r for r in self.rows if r.get("epoch") != row.get("epoch")] + [dict(row)]

    def write(self, plot: bool = True) -> list[Path]:
        """Write CSV, JSON and (``plot``) PNG; returns the paths."""
        columns: list[str] = []
        for row in self.rows:
            columns += [k for k in row if k not in columns]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: row.get(k, "") for k in columns})
        paths = [write_text(self.out_dir / "metrics.csv", buf.getvalue()),
                 write_json(self.out_dir / "metrics.json", self.rows)]
        if plot and self.rows:
            paths.append(self.plot(self.out_dir / "metrics.png"))
        return paths

    def plot(self, path: Path) -> Path:
        """Loss terms (left) and AP / AP50 (right) against the epoch, with matplotlib's Agg backend."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from visionkit.atomic import atomic_path

        epochs = [r["epoch"] for r in self.rows]
        fig, (ax_loss, ax_ap) = plt.subplots(1, 2, figsize=(10, 4))
        loss_keys = [k for k in self.rows[-1] if k.startswith("loss")]
        for key in loss_keys:
            ax_loss.plot(epochs, [_num(r.get(key)) for r in self.rows], marker="o", label=key,
                         linewidth=2.5 if key == "loss" else 1.2)
        ax_loss.set_xlabel("epoch")
        ax_loss.set_ylabel("training loss (epoch mean)")
        ax_loss.legend(fontsize=8)
        ax_loss.grid(alpha=0.3)
        for key in ("AP", "AP50", "AP75"):
            if any(key in r for r in self.rows):
                ax_ap.plot(epochs, [_num(r.get(key)) for r in self.rows], marker="o", label=key)
        ax_ap.set_xlabel("epoch")
        ax_ap.set_ylabel("validation COCO AP")
        ax_ap.set_ylim(0, 1)
        ax_ap.grid(alpha=0.3)
        if ax_ap.lines:
            ax_ap.legend(fontsize=8)
        else:
            ax_ap.text(0.5, 0.5, "no validation set", ha="center", va="center", transform=ax_ap.transAxes)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100)
        plt.close(fig)
        return path


def _num(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v
