"""PNG plots of an evaluation (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_plots(results: dict[str, Any], out: Path) -> list[Path]:
    """``scaling_m.png`` / ``scaling_n.png`` (when a grid ran), ``topics.png``, ``modes.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["results"]
    written: list[Path] = []
    grid = [r for r in rows if r["mode"] == "grid"]
    for scorer in sorted({r["scorer"] for r in grid}):
        g = [r for r in grid if r["scorer"] == scorer]
        for axis, other in (("m", "n"), ("n", "m")):
            fig, ax = plt.subplots(figsize=(6, 4))
            for val in sorted({r[other] for r in g}):
                pts = sorted((r[axis], r["accuracy"]) for r in g if r[other] == val)
                ax.plot(
                    [p[0] for p in pts],
                    [100 * (p[1] or 0) for p in pts],
                    "o-",
                    label=f"{other}={val}",
                )
            ax.set_xlabel("samples m" if axis == "m" else "neighbours n")
            ax.set_ylabel("accuracy (%)")
            ax.set_title(f"{scorer}: accuracy vs {axis}")
            ax.grid(alpha=0.3)
            ax.legend()
            path = out / f"scaling_{axis}_{scorer}.png"
            fig.tight_layout()
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    pers = [r for r in rows if r["mode"] == "personalized"]
    if pers:
        topics = sorted({t for r in pers for t in r["per_topic"]})
        fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(topics) + 2), 4.5))
        width = 0.8 / len(pers)
        for k, r in enumerate(pers):
            xs = [i + k * width for i in range(len(topics))]
            ax.bar(xs, [100 * r["per_topic"].get(t, 0.0) for t in topics], width, label=r["scorer"])
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(topics))])
        ax.set_xticklabels(topics, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title("personalized accuracy per topic")
        ax.legend()
        fig.tight_layout()
        path = out / "topics.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    modes = [r for r in rows if r["mode"] != "grid"]
    if modes:
        fig, ax = plt.subplots(figsize=(7, 4))
        labels = [f"{r['scorer']}\n{r['mode']}" for r in modes]
        ax.bar(range(len(modes)), [100 * (r["accuracy"] or 0) for r in modes], color="tab:blue")
        ax.axhline(50, color="grey", lw=0.8, ls="--")
        ax.set_xticks(range(len(modes)))
        ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title("accuracy per scorer and mode (ties = 0.5)")
        fig.tight_layout()
        path = out / "modes.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
