"""PNG plots for run directories (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_scores(rows: list[dict[str, Any]], out: Path, title: str, ylabel: str = "accuracy (%)") -> Path:
    """Bar chart of each condition's mean score with its 95% interval."""
    fig, ax = plt.subplots(figsize=(1.6 * len(rows) + 2, 4))
    names = [r["condition"] for r in rows]
    means = np.array([r["score"] for r in rows]) * 100
    err = np.array([[r["score"] - r["ci_low"], r["ci_high"] - r["score"]] for r in rows]).T * 100
    ax.bar(names, means, yerr=err, capsize=4, color="#4c72b0")
    for i, (m, top) in enumerate(zip(means, means + err[1])):
        ax.text(i, top + 1, f"{m:.1f}", ha="center", va="bottom")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_ylim(0, max(100, float(np.nanmax(means + err[1])) + 5) if len(rows) else 100)
    ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_paired(rows: list[dict[str, Any]], reference: str, out: Path, title: str) -> Path:
    """Each condition minus the reference, paired by item: the mean difference, its 95%
    interval and win/tie/loss counts. Whether an interval crosses zero is the result."""
    rows = [r for r in rows if reference in r.get("vs", {})]
    fig, ax = plt.subplots(figsize=(1.4 * max(1, len(rows)) + 2, 4))
    ds = [r["vs"][reference] for r in rows]
    means = np.array([d["mean"] for d in ds]) * 100
    err = np.array([[d["mean"] - d["ci_low"], d["ci_high"] - d["mean"]] for d in ds]).reshape(-1, 2).T * 100
    ax.errorbar(range(len(rows)), means, yerr=err, fmt="o", capsize=5, color="#4c72b0")
    ax.axhline(0, color="gray", linestyle="--")
    for i, d in enumerate(ds):
        ax.annotate(f"{d['wins']}/{d['ties']}/{d['losses']}", (i, means[i]), textcoords="offset points",
                    xytext=(8, 0), fontsize=8)
    ax.set_xticks(range(len(rows)), [r["condition"] for r in rows], rotation=20)
    ax.set_ylabel(f"difference from {reference} (points; W/T/L)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_policy_rounds(rows: list[dict[str, Any]], baselines: dict[str, float], out: Path, title: str) -> Path:
    """Accuracy of the policy after each round, baselines as horizontal lines (SEAL's Figure 4)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = list(range(len(rows)))
    ax.errorbar(xs, [100 * r["score"] for r in rows],
                yerr=[[100 * (r["score"] - r["ci_low"]) for r in rows],
                      [100 * (r["ci_high"] - r["score"]) for r in rows]],
                marker="o", capsize=4, label="passage + own self-edits")
    for (name, value), style in zip(baselines.items(), ["--", ":", "-.", (0, (3, 1, 1, 1)), (0, (1, 3)), (0, (5, 1))]):
        ax.axhline(100 * value, linestyle=style, color="gray", label=name)
    ax.set_xticks(xs, [r["condition"] for r in rows])
    ax.set_xlabel("ReST-EM round")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_training_rounds(metrics: list[dict[str, Any]], out_dir: Path, baseline: str) -> list[Path]:
    """Reward distribution and self-edit length per ReST-EM round; ``baseline`` names what the reward subtracts."""
    paths = []
    for key, ylabel, name in [("rewards", f"reward (adapted − {baseline} score)", "rewards.png"),
                              ("selfedit_words", "self-edit length (words)", "selfedit_length.png")]:
        fig, ax = plt.subplots(figsize=(1.2 * len(metrics) + 3, 4))
        data = [m[key] or [0.0] for m in metrics]
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(metrics) + 1), [f"round {m['round']}" for m in metrics])
        ax.set_ylabel(ylabel)
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=120)
        plt.close(fig)
        paths.append(out_dir / name)
    return paths


def plot_curves(history: list[dict[str, Any]], keys: list[str], out: Path, title: str) -> Path:
    """One panel per logged metric against the training step (e.g. GRPO reward and KL)."""
    keys = [k for k in keys if any(k in h for h in history)]
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(4 * max(1, len(keys)), 3.5), squeeze=False)
    for ax, key in zip(axes[0], keys):
        points = [(h["step"], h[key]) for h in history if key in h]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o")
        ax.set_xlabel("step")
        ax.set_title(key, fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_matrices(matrices: dict[str, list[list[float | None]]], items: list[str], out: Path, title: str) -> Path:
    """One heatmap per condition: row i is the model after update i, column j passage j (the
    continual-learning matrix of the SEAL paper); cells above the diagonal are not yet learned."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(3.6 * len(matrices) + 1, 3.8), squeeze=False)
    for ax, (name, m) in zip(axes[0], matrices.items()):
        grid = np.array([[np.nan if v is None else 100 * v for v in row] for row in m], dtype=float)
        im = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis")
        for (i, j), v in np.ndenumerate(grid):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7, color="white" if v < 60 else "black")
        ax.set_xticks(range(len(items)), items, rotation=90, fontsize=7)
        ax.set_yticks(range(len(m)), [f"after {i}" for i in range(len(m))], fontsize=7)
        ax.set_title(name, fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    fig.suptitle(title, fontsize=9)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out


def plot_distributions(dists: dict[str, dict[str, dict[str, int]]], out: Path, title: str) -> Path:
    """Categorical choices per field, one bar group per label (e.g. before/after ReST-EM):
    the share of each value among that label's choices."""
    fields = list(next(iter(dists.values()))) if dists else []
    fig, axes = plt.subplots(1, max(1, len(fields)), figsize=(2.6 * max(1, len(fields)) + 1, 3.6), squeeze=False)
    width = 0.8 / max(1, len(dists))
    for ax, name in zip(axes[0], fields):
        values = sorted({v for d in dists.values() for v in d[name]}, key=lambda v: (len(v), v))
        for k, (label, d) in enumerate(dists.items()):
            total = sum(d[name].values()) or 1
            ax.bar(np.arange(len(values)) + k * width, [100 * d[name].get(v, 0) / total for v in values], width,
                   label=label)
        ax.set_xticks(np.arange(len(values)) + width * (len(dists) - 1) / 2, values, rotation=60, fontsize=7)
        ax.set_title(name, fontsize=8)
        ax.set_ylim(0, 100)
    axes[0][0].set_ylabel("% of self-edits")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
