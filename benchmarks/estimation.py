"""Performance estimation: mlwarden's CBPE and DLE against NannyML's, on the same data.

Three simulated models with known truth (the scenarios of
tests/plugins/estimators/scenarios.py, copied below so that the peer's venv needs
nothing of ours): a binary classifier, a 3-class classifier and a regressor. Each is
fitted on a labelled reference, then estimated on windows (NannyML: chunks) of 1,000
rows: a third with no shift, a third with a harmful covariate shift (the real accuracy
falls, the real MAE rises), a third with a harmless one. The realized metric of each
window is computed from its labels once; both tools' estimates are held against it.

Printed per scenario and tool: the mean absolute error of the estimate against the
realized metric (per metric, and their mean), the share of windows whose realized
value fell within the tool's band, fit and estimate seconds, and NannyML's time over
ours (issue 21's goals: error no worse than NannyML's, at least 3x faster).

    python benchmarks/estimation.py                 # quick: 10k reference, 12 windows
    python benchmarks/estimation.py --size full     # 50k reference, 30 windows

NannyML runs in its own virtual environment under benchmarks/.peers/nannyml
(gitignored; the drift benchmark's, same pins), created on the first run. Every tool
runs in its own subprocess with one BLAS/OpenMP thread. This file is also the runner
each subprocess executes (``--run TOOL --data DIR``), so it imports only the standard
library and numpy at the top.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
PEERS_DIR = HERE / ".peers"
PEER = ("nannyml==0.13.1", "statsmodels")  # as benchmarks/drift.py pins it
#: reference rows, windows per phase, rows per window
SIZES = {"quick": (10_000, 4, 1_000), "full": (50_000, 10, 1_000)}
SCENARIOS = {
    "binary": ("classification", 2),
    "multiclass": ("classification", 3),
    "regression": ("regression", 0),
}
METRICS = {
    "classification": ("accuracy", "precision", "recall", "f1", "roc_auc"),
    "regression": ("mae", "mse"),
}
PHASES = ("none", "harmful", "harmless")
GOAL_SPEEDUP = 3.0
#: "No worse" than NannyML's error: within this factor of it (2%, well below the
#: window-to-window noise of the realized metric the errors are measured against).
GOAL_ERROR_RATIO = 1.02


# --- data (the scenarios of tests/plugins/estimators/scenarios.py) --------------------


def _features(rng: np.random.Generator, rows: int, shift: str, squeeze: float) -> np.ndarray:
    x = rng.normal(0.0, 1.0, size=(rows, 2))
    if shift == "harmful":
        x[:, 0] *= squeeze
    elif shift == "harmless":
        x[:, 1] += 1.5
    return x


def simulate(
    rng: np.random.Generator, task: str, classes: int, rows: int, shift: str
) -> dict[str, np.ndarray]:
    """Features, prediction, scores (classification) and labels of ``rows`` rows."""
    if task == "regression":
        x = _features(rng, rows, shift, squeeze=1.5)
        prediction = 2.0 * x[:, 0] + x[:, 1]
        y = prediction + rng.normal(0.0, 0.2 + np.abs(x[:, 0]))
        return {"x": x, "prediction": prediction, "label": y}
    x = _features(rng, rows, shift, squeeze=0.25)
    if classes == 2:
        truth1 = 1.0 / (1.0 + np.exp(-3.0 * x[:, 0]))
        truth = np.c_[1.0 - truth1, truth1]
        score1 = 1.0 / (1.0 + np.exp(-1.5 * x[:, 0] - 0.3))
        scores = np.c_[1.0 - score1, score1]
        predicted = (score1 >= 0.5).astype(np.int64)
    else:
        slopes = np.linspace(-3.0, 3.0, classes)
        logits = slopes[None, :] * x[:, [0]] - 0.5 * slopes[None, :] ** 2 / 3.0
        truth = np.exp(logits - logits.max(axis=1, keepdims=True))
        truth /= truth.sum(axis=1, keepdims=True)
        tempered = np.exp(0.6 * (logits - logits.max(axis=1, keepdims=True)))
        scores = tempered / tempered.sum(axis=1, keepdims=True)
        predicted = scores.argmax(axis=1)
    cumulative = np.cumsum(truth, axis=1)
    y = (rng.random((rows, 1)) > cumulative).sum(axis=1).clip(0, classes - 1)
    return {"x": x, "scores": scores, "prediction": predicted, "label": y}


def make_data(directory: Path, scenario: str, size: str, seed: int = 0) -> dict[str, Any]:
    task, classes = SCENARIOS[scenario]
    ref_rows, per_phase, rows = SIZES[size]
    rng = np.random.default_rng(seed)
    reference = simulate(rng, task, classes, ref_rows, "none")
    windows = [simulate(rng, task, classes, rows, p) for p in PHASES for _ in range(per_phase)]
    current = {k: np.concatenate([w[k] for w in windows]) for k in windows[0]}
    np.savez(directory / "reference.npz", **reference)
    np.savez(directory / "current.npz", **current)
    meta = {"scenario": scenario, "task": task, "classes": classes, "rows": rows,
            "windows": len(windows), "metrics": list(METRICS[task])}  # fmt: skip
    (directory / "meta.json").write_text(json.dumps(meta))
    return meta


def load(directory: Path) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
    meta = json.loads((directory / "meta.json").read_text())
    with np.load(directory / "reference.npz") as r, np.load(directory / "current.npz") as c:
        return meta, dict(r), dict(c)


# --- runners (one per subprocess) ------------------------------------------------------


def run_mlwarden(directory: Path) -> dict[str, Any]:
    """mlwarden: the built-in estimator of the task, one ``estimate`` call per window."""
    # What a daemon imports once at start, imported before the clock starts (NannyML's
    # dependencies are imported by ``import nannyml`` likewise).
    import scipy.stats  # noqa: F401
    import sklearn.ensemble
    import sklearn.isotonic
    import sklearn.linear_model  # noqa: F401

    from mlwarden.plugins.estimators.cbpe import CBPE
    from mlwarden.plugins.estimators.dle import DLE
    from mlwarden.types import EstimationData

    meta, ref, cur = load(directory)
    task, k = meta["task"], meta["classes"]
    classes = tuple(str(c) for c in range(k))

    def data(part: dict[str, np.ndarray], sl: slice, labels: bool) -> EstimationData:
        if task == "regression":
            return EstimationData("regression", part["x"][sl], ("x0", "x1"),
                                  prediction=part["prediction"][sl],
                                  labels=part["label"][sl] if labels else None)  # fmt: skip
        names = np.asarray(classes, dtype=object)
        return EstimationData("classification", part["x"][sl], ("x0", "x1"),
                              prediction=names[part["prediction"][sl]],
                              probabilities=part["scores"][sl], classes=classes,
                              labels=names[part["label"][sl]] if labels else None)  # fmt: skip

    estimator = DLE() if task == "regression" else CBPE()
    start = time.perf_counter()
    estimator.fit(data(ref, slice(None), True))
    fit = time.perf_counter() - start
    rows, estimates = meta["rows"], []
    start = time.perf_counter()
    for w in range(meta["windows"]):
        result = estimator.estimate(data(cur, slice(w * rows, (w + 1) * rows), False))
        estimates.append({m: [e.value, e.lower, e.upper] for m, e in result.items()})
    estimate = time.perf_counter() - start
    return {"version": "mlwarden", "fit_seconds": fit, "estimate_seconds": estimate,
            "estimates": estimates}  # fmt: skip


def run_nannyml(directory: Path) -> dict[str, Any]:
    """NannyML: CBPE or DLE with chunks of the window size, one ``estimate`` call."""
    import nannyml
    import pandas as pd

    meta, ref, cur = load(directory)
    task, k, rows = meta["task"], meta["classes"], meta["rows"]

    def frame(part: dict[str, np.ndarray], labels: bool) -> pd.DataFrame:
        out = pd.DataFrame({"x0": part["x"][:, 0], "x1": part["x"][:, 1]})
        if task == "regression":
            out["pred"] = part["prediction"]
        elif k == 2:
            out["pred"] = part["prediction"].astype(np.int64)
            out["proba"] = part["scores"][:, 1]
        else:
            out["pred"] = part["prediction"].astype(str)
            for j in range(k):
                out[f"p{j}"] = part["scores"][:, j]
        if labels:
            out["y"] = (
                part["label"] if task == "regression" or k == 2 else part["label"].astype(str)
            )
        return out

    reference, analysis = frame(ref, True), frame(cur, False)
    metrics = meta["metrics"]
    if task == "regression":
        estimator = nannyml.DLE(feature_column_names=["x0", "x1"], y_pred="pred", y_true="y",
                                metrics=metrics, chunk_size=rows)  # fmt: skip
    elif k == 2:
        estimator = nannyml.CBPE(y_pred_proba="proba", y_pred="pred", y_true="y",
                                 problem_type="classification_binary", metrics=metrics,
                                 chunk_size=rows)  # fmt: skip
    else:
        estimator = nannyml.CBPE(y_pred_proba={str(j): f"p{j}" for j in range(k)},
                                 y_pred="pred", y_true="y", metrics=metrics,
                                 problem_type="classification_multiclass",
                                 chunk_size=rows)  # fmt: skip
    start = time.perf_counter()
    estimator.fit(reference)
    fit = time.perf_counter() - start
    start = time.perf_counter()
    result = estimator.estimate(analysis)
    estimate = time.perf_counter() - start
    table = result.filter(period="analysis").to_df()
    estimates = []
    for i in range(len(table)):
        estimates.append({
            m: [float(table[(m, "value")].iloc[i]),
                float(table[(m, "lower_confidence_boundary")].iloc[i]),
                float(table[(m, "upper_confidence_boundary")].iloc[i])]
            for m in metrics
        })  # fmt: skip
    return {"version": f"nannyml {nannyml.__version__}", "fit_seconds": fit,
            "estimate_seconds": estimate, "estimates": estimates}  # fmt: skip


RUNNERS = {"mlwarden": run_mlwarden, "nannyml": run_nannyml}


# --- orchestration ---------------------------------------------------------------------


def peer_python() -> Path:
    """NannyML's venv interpreter, creating the venv and installing it if needed."""
    venv = PEERS_DIR / "nannyml"
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    wanted = " ".join(PEER)
    if marker.exists() and marker.read_text() == wanted:
        return python
    print(f"installing {wanted} into {venv} ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER], check=True)
    marker.write_text(wanted)
    return python


def run_tool(tool: str, directory: Path, timeout: float) -> dict[str, Any]:
    python = peer_python() if tool == "nannyml" else Path(sys.executable)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               MLWARDEN_DISABLE_PLUGIN_AUTOLOAD="1")  # fmt: skip
    proc = subprocess.run(
        [str(python), str(Path(__file__).resolve()), "--run", tool, "--data", str(directory)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def realized(directory: Path) -> list[dict[str, float]]:
    """The realized metrics of every window (mlwarden.stats.estimation's definitions)."""
    from mlwarden.stats.estimation import classification_scores, regression_scores

    meta, _, cur = load(directory)
    rows, out = meta["rows"], []
    for w in range(meta["windows"]):
        sl = slice(w * rows, (w + 1) * rows)
        if meta["task"] == "regression":
            out.append(regression_scores(cur["prediction"][sl], cur["label"][sl]))
        else:
            out.append(classification_scores(cur["scores"][sl], cur["prediction"][sl],
                                              cur["label"][sl]))  # fmt: skip
    return out


def score(result: dict[str, Any], truth: list[dict[str, float]], metrics: list[str]) -> dict:
    """Mean absolute error per metric (and overall) and the share of windows in the band."""
    errors: dict[str, float] = {}
    hits = total = 0
    for m in metrics:
        pairs = [(e[m], t[m]) for e, t in zip(result["estimates"], truth, strict=True)]
        errors[m] = float(np.mean([abs(v[0] - r) for v, r in pairs]))
        hits += sum(v[1] <= r <= v[2] for v, r in pairs)
        total += len(pairs)
    return {"mae": errors, "mean_mae": float(np.mean(list(errors.values()))),
            "within_band": hits / total}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=SIZES, default="quick")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--tools", default=",".join(RUNNERS))
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per tool")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated data")
    parser.add_argument("--run", choices=RUNNERS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(RUNNERS[args.run](args.data)))
        return
    tools = args.tools.split(",")
    report: dict[str, Any] = {"size": args.size, "scenarios": {}}
    print(f"seed {args.seed}, size {args.size}: reference {SIZES[args.size][0]} rows, "
          f"{3 * SIZES[args.size][1]} windows of {SIZES[args.size][2]}")  # fmt: skip
    for scenario in args.scenarios.split(","):
        with tempfile.TemporaryDirectory(prefix="estimation-bench-") as tmp:
            meta = make_data(Path(tmp), scenario, args.size, seed=args.seed)
            truth = realized(Path(tmp))
            results = {tool: run_tool(tool, Path(tmp), args.timeout) for tool in tools}
        print(f"\n{scenario} ({'/'.join(meta['metrics'])})")
        print(f"  {'tool':<10} {'MAE of estimate':<44} {'mean':>7} {'in band':>8} "
              f"{'fit s':>7} {'est. s':>7}")  # fmt: skip
        rows = {}
        for tool, result in results.items():
            if "error" in result:
                print(f"  {tool:<10} failed: {result['error']}")
                continue
            s = score(result, truth, meta["metrics"])
            rows[tool] = {**s, "fit_seconds": result["fit_seconds"],
                          "estimate_seconds": result["estimate_seconds"],
                          "version": result["version"]}  # fmt: skip
            per = " ".join(f"{m}={v:.4f}" for m, v in s["mae"].items())
            print(f"  {tool:<10} {per:<44} {s['mean_mae']:>7.4f} {s['within_band']:>8.0%} "
                  f"{result['fit_seconds']:>7.3f} {result['estimate_seconds']:>7.3f}")  # fmt: skip
        if {"mlwarden", "nannyml"} <= set(rows):
            ours, peer = rows["mlwarden"], rows["nannyml"]
            ours_t = ours["fit_seconds"] + ours["estimate_seconds"]
            peer_t = peer["fit_seconds"] + peer["estimate_seconds"]
            speedup = peer_t / ours_t
            ratio = ours["mean_mae"] / peer["mean_mae"]
            verdict = ("met" if speedup >= GOAL_SPEEDUP and ratio <= GOAL_ERROR_RATIO
                       else "NOT met")  # fmt: skip
            print(f"  nannyml time / mlwarden time: {speedup:.1f}x (fit "
                  f"{peer['fit_seconds'] / ours['fit_seconds']:.1f}x, estimate "
                  f"{peer['estimate_seconds'] / ours['estimate_seconds']:.1f}x); error ratio "
                  f"mlwarden/nannyml {ratio:.3f}; goal (error ratio <= {GOAL_ERROR_RATIO:g}, "
                  f">= {GOAL_SPEEDUP:g}x faster): {verdict}")  # fmt: skip
            rows["speedup"] = speedup
        report["scenarios"][scenario] = rows
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
