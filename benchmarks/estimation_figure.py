"""The figure of docs/estimation.md: estimated vs realized metric per window.

Runs mlwarden's CBPE (binary scenario: accuracy) and DLE (regression: MAE) of
benchmarks/estimation.py on windows with no shift, a harmful and a harmless covariate
shift, and draws each estimate with its band beside the realized value. Writes
docs/estimation.png with matplotlib (an SVG when matplotlib is missing is not drawn:
the script says so and stops).

    python benchmarks/estimation_figure.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from estimation import PHASES, make_data, realized, run_mlwarden

OUT = Path(__file__).resolve().parents[1] / "docs" / "estimation.png"


def series(scenario: str, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        make_data(Path(tmp), scenario, "full", seed=3)
        truth = realized(Path(tmp))
        result = run_mlwarden(Path(tmp))
    est = np.array([e[metric] for e in result["estimates"]])
    return est[:, 0], est[:, 1], est[:, 2], np.array([t[metric] for t in truth])


def main() -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("matplotlib is not installed: pip install matplotlib")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax, (scenario, metric, title) in zip(
        axes,
        (("binary", "accuracy", "CBPE: accuracy"), ("regression", "mae", "DLE: MAE")),
        strict=True,
    ):
        value, lower, upper, real = series(scenario, metric)
        x = np.arange(len(value))
        ax.fill_between(x, lower, upper, color="tab:blue", alpha=0.2, label="95% band")
        ax.plot(x, value, "o-", color="tab:blue", ms=3, label="estimated")
        ax.plot(x, real, "s", color="tab:red", ms=3, label="realized")
        per = len(x) // len(PHASES)
        for i, phase in enumerate(PHASES):
            ax.axvspan(i * per - 0.5, (i + 1) * per - 0.5, color="grey", alpha=0.07 * (i % 2))
            ax.text(i * per + per / 2 - 0.5, ax.get_ylim()[1], phase, ha="center", va="bottom",
                    fontsize=8)  # fmt: skip
        ax.set_title(title, pad=14)
        ax.set_xlabel("window (1,000 rows)")
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(OUT, dpi=80)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    main()
