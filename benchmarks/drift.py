"""Batch drift check: mlwarden against evidently, nannyml, alibi-detect and a plain scipy loop.

One synthetic data set (numeric features of five shapes plus categorical features, a
known subset of them shifted) goes through every tool's per-feature check: KS on the
numeric features and chi-square on the categorical ones, the reference fitted once as
a daemon does. Each tool runs in its own subprocess (peak RSS is per process); the
peers run in their own virtual environments under benchmarks/.peers/ (gitignored),
created here with ``python -m venv`` and pinned versions, because they cannot share the
project's environment (alibi-detect pins numpy < 2).

Printed per tool: fit and check seconds, feature values per second (current rows x
features / check seconds), peak RSS, the check-time ratio to mlwarden, the verdict
agreement with the known truth, for mlwarden the largest deviation of its KS
statistics and p-values from the scipy loop's, and each peer's check time over
mlwarden's against issue 3's goals. ``mlwarden`` scores the features on the machine's
cores (``mlwarden.daemon.core.parallel.map_threads``, as the monitor does);
``mlwarden_serial`` is the same on one thread.

    python benchmarks/drift.py --size small       # 200k x 55 reference, 50k current
    python benchmarks/drift.py --size large       # 1M x 105 reference, 200k current
    python benchmarks/drift.py --size quick       # 20k x 25 / 5k, a smoke run

The first run installs the peers (a few minutes); ``--peers scipy,mlwarden`` skips them.

This file is also the runner each subprocess executes (``--run TOOL --data DIR``), so it
imports only the standard library, numpy and drift_data.py at the top.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from drift_data import frames, load, make_data

HERE = Path(__file__).resolve().parent
PEERS_DIR = HERE / ".peers"
#: Peer -> pinned requirements; each gets its own venv under benchmarks/.peers/.
#: (evidently 0.7.23 imports a pandas internal that pandas 3 removed.)
PEERS = {
    "evidently": ("evidently==0.7.23", "pandas<3"),
    "nannyml": ("nannyml==0.13.1", "statsmodels"),  # imported, not declared
    "alibi": ("alibi-detect==0.13.0",),
}
TOOLS = (
    "mlwarden", "mlwarden_serial", "scipy", "alibi", "nannyml", "mlwarden_daemon", "evidently"
)  # fmt: skip
#: reference rows, current rows, numeric features, categorical features
SIZES = {
    "quick": (20_000, 5_000, 20, 5),
    "small": (200_000, 50_000, 50, 5),
    "large": (1_000_000, 200_000, 100, 5),
}
ALPHA = 0.05
#: Issue 3's goals: the peer's check time over mlwarden's must be at least this.
GOALS = {"alibi": 15.0, "evidently": 40.0, "nannyml": 1.0}


# --- runners (one per subprocess) ------------------------------------------------------


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_scipy(directory: Path) -> dict[str, Any]:
    """A plain loop: ks_2samp per numeric column, chi2_contingency per categorical one."""
    import scipy
    from scipy import stats

    meta, ref_num, cur_num, ref_cat, cur_cat = load(directory)
    loaded = peak_rss_mb()
    start = time.perf_counter()
    out: dict[str, Any] = {}
    for j, name in enumerate(meta["numeric"]):
        r = stats.ks_2samp(ref_num[:, j], cur_num[:, j])
        out[name] = {"statistic": float(r.statistic), "p_value": float(r.pvalue),
                     "drifted": bool(r.pvalue < ALPHA)}  # fmt: skip
    for k, name in enumerate(meta["categorical"]):
        size = len(meta["categories"][name])
        table = np.vstack([np.bincount(ref_cat[:, k], minlength=size),
                           np.bincount(cur_cat[:, k], minlength=size)])  # fmt: skip
        table = table[:, table.sum(axis=0) > 0]
        r = stats.chi2_contingency(table)
        out[name] = {"statistic": float(r.statistic), "p_value": float(r.pvalue),
                     "drifted": bool(r.pvalue < ALPHA)}  # fmt: skip
    check = time.perf_counter() - start
    return {"version": f"scipy {scipy.__version__}", "fit_seconds": 0.0, "check_seconds": check,
            "loaded_rss_mb": loaded, "features": out}  # fmt: skip


def run_mlwarden(directory: Path, workers: int | None = None) -> dict[str, Any]:
    """mlwarden's ks and chi2 classes on the full data: fit once, then score the window.

    The features are scored with ``map_threads`` on the threads the monitor would use
    (``workers_for``: every core from 20,000 rows, numpy's sorts and searches release
    the GIL); ``mlwarden_serial`` is the same on one thread.
    """
    import mlwarden
    from mlwarden.daemon.core.parallel import map_threads, workers_for
    from mlwarden.plugins.drift.chi2 import ChiSquare
    from mlwarden.plugins.drift.ks import KolmogorovSmirnov
    from mlwarden.types import FeatureData

    meta, ref_num, cur_num, ref_cat, cur_cat = load(directory)
    loaded = peak_rss_mb()
    workers = workers_for(len(cur_num)) if workers is None else workers
    numeric = {n: j for j, n in enumerate(meta["numeric"])}
    categorical = {n: k for k, n in enumerate(meta["categorical"])}

    def feature(name: str, numbers: np.ndarray, codes: np.ndarray) -> Any:
        if name in numeric:
            return FeatureData(name, "numeric", sample=numbers[:, numeric[name]])
        labels = tuple(meta["categories"][name])
        counts = np.bincount(codes[:, categorical[name]], minlength=len(labels))
        return FeatureData(name, "categorical", categories=labels, counts=counts)

    def fit(name: str) -> tuple[str, Any]:
        method = KolmogorovSmirnov() if name in numeric else ChiSquare()
        return name, method.fit(feature(name, ref_num, ref_cat))

    def score(item: tuple[str, Any]) -> tuple[str, Any]:
        name, method = item
        return name, method.score(feature(name, cur_num, cur_cat))

    start = time.perf_counter()
    fitted = map_threads(fit, [*numeric, *categorical], workers=workers)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    scores = map_threads(score, fitted, workers=workers)
    check = time.perf_counter() - start
    out = {name: {"statistic": s.statistic, "p_value": s.p_value, "drifted": s.drifted}
           for name, s in scores}  # fmt: skip
    label = f"mlwarden {mlwarden.__version__} ({workers} thread{'s' if workers > 1 else ''})"
    return {"version": label, "fit_seconds": fit_seconds, "check_seconds": check,
            "loaded_rss_mb": loaded, "features": out}  # fmt: skip


def run_mlwarden_serial(directory: Path) -> dict[str, Any]:
    """``run_mlwarden`` on one thread."""
    return run_mlwarden(directory, workers=1)


def run_mlwarden_daemon(directory: Path) -> dict[str, Any]:
    """The daemon's batch path: ``Warden.monitor_model_drift(model, DataFrame)``.

    The reference (a Parquet file) is profiled and the methods fitted by a first call;
    the second call is timed. It profiles the window as ingest does (histograms over the
    reference's quantile bins, a bounded sample), runs the default methods per feature
    kind (ks + psi, chi2 + jensen_shannon) and their vote, and stores the report.
    """
    import asyncio

    import mlwarden
    from mlwarden.daemon.core.config_loader import load_config
    from mlwarden.daemon.warden import Warden

    meta, ref, cur = frames(directory)
    base = Path(tempfile.mkdtemp(prefix="mlwarden-bench-"))
    reference = base / "reference.parquet"
    ref.to_parquet(reference)
    del ref
    config_path = base / "mlwarden.toml"
    config_path.write_text(
        f'[daemon]\nbase_path = "{base}"\n\n[[models]]\nname = "bench"\n'
        f'reference = "{reference}"\ncategorical = {json.dumps(meta["categorical"])}\n'
    )
    loaded = peak_rss_mb()

    async def check() -> tuple[float, float, dict[str, Any]]:
        config = load_config(config_path, env={})
        async with Warden(config) as warden:
            start = time.perf_counter()
            await warden.monitor_model_drift("bench", cur.iloc[:1000])
            fit = time.perf_counter() - start
            start = time.perf_counter()
            report = await warden.monitor_model_drift("bench", cur)
            return fit, time.perf_counter() - start, report

    try:
        fit, seconds, report = asyncio.run(check())
    finally:
        shutil.rmtree(base, ignore_errors=True)
    out = {}
    for name, entry in report["feature_drifts"].items():
        methods = entry.get("methods", {})
        first = methods.get("ks") or methods.get("chi2") or {}
        out[name] = {"statistic": first.get("statistic"), "p_value": first.get("p_value"),
                     "drifted": bool(entry["drifted"])}  # fmt: skip
    return {"version": f"mlwarden {mlwarden.__version__} (daemon path)", "fit_seconds": fit,
            "check_seconds": seconds, "loaded_rss_mb": loaded, "features": out}  # fmt: skip


def run_evidently(directory: Path) -> dict[str, Any]:
    """evidently: DataDriftPreset with KS for numeric and chi-square for categorical columns."""
    import evidently
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    meta, ref, cur = frames(directory)
    loaded = peak_rss_mb()
    definition = DataDefinition(numerical_columns=meta["numeric"],
                                categorical_columns=meta["categorical"])  # fmt: skip
    start = time.perf_counter()
    reference = Dataset.from_pandas(ref, data_definition=definition)
    fit = time.perf_counter() - start
    preset = DataDriftPreset(num_method="ks", cat_method="chisquare", include_tests=False)
    start = time.perf_counter()
    current = Dataset.from_pandas(cur, data_definition=definition)
    snapshot = Report([preset]).run(current, reference)
    check = time.perf_counter() - start
    out: dict[str, Any] = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        name = config.get("column")
        if name not in meta["truth"]:  # the preset's summary metrics
            continue
        value = metric["value"]
        p_value = float(value if not isinstance(value, dict) else value.get("value"))
        threshold = float(config.get("threshold") or ALPHA)
        out[name] = {"statistic": None, "p_value": p_value, "drifted": p_value < threshold}
    return {"version": f"evidently {evidently.__version__}", "fit_seconds": fit,
            "check_seconds": check, "loaded_rss_mb": loaded, "features": out}  # fmt: skip


def run_nannyml(directory: Path) -> dict[str, Any]:
    """nannyml: UnivariateDriftCalculator, kolmogorov_smirnov and chi2, chunks of window size."""
    import nannyml

    meta, ref, cur = frames(directory)
    loaded = peak_rss_mb()
    columns = meta["numeric"] + meta["categorical"]
    calc = nannyml.UnivariateDriftCalculator(
        column_names=columns, treat_as_categorical=meta["categorical"],
        continuous_methods=["kolmogorov_smirnov"], categorical_methods=["chi2"],
        chunk_size=meta["cur_rows"],  # the window is one chunk; the reference gives several
    )  # fmt: skip
    start = time.perf_counter()
    calc.fit(ref)
    fit = time.perf_counter() - start
    start = time.perf_counter()
    result = calc.calculate(cur)
    check = time.perf_counter() - start
    table = result.filter(period="analysis").to_df()
    out: dict[str, Any] = {}
    for name in columns:
        method = "chi2" if name in meta["categorical"] else "kolmogorov_smirnov"
        out[name] = {"statistic": float(table[(name, method, "value")].iloc[0]),
                     "p_value": None,
                     "drifted": bool(table[(name, method, "alert")].iloc[0])}  # fmt: skip
    return {"version": f"nannyml {nannyml.__version__}", "fit_seconds": fit,
            "check_seconds": check, "loaded_rss_mb": loaded, "features": out}  # fmt: skip


def run_alibi(directory: Path) -> dict[str, Any]:
    """alibi-detect: TabularDrift (KS per numeric feature, chi-square per categorical)."""
    import alibi_detect
    from alibi_detect.cd import TabularDrift

    meta, ref_num, cur_num, ref_cat, cur_cat = load(directory)
    x_ref = np.hstack([ref_num, ref_cat.astype(np.float64)])
    x_cur = np.hstack([cur_num, cur_cat.astype(np.float64)])
    del ref_num, cur_num
    loaded = peak_rss_mb()
    first_cat = len(meta["numeric"])
    per_feature = {first_cat + k: len(meta["categories"][n]) for k, n in
                   enumerate(meta["categorical"])}  # fmt: skip
    start = time.perf_counter()
    detector = TabularDrift(x_ref, p_val=ALPHA, categories_per_feature=per_feature)
    fit = time.perf_counter() - start
    start = time.perf_counter()
    prediction = detector.predict(x_cur, drift_type="feature", return_p_val=True,
                                  return_distance=True)  # fmt: skip
    check = time.perf_counter() - start
    data = prediction["data"]
    out: dict[str, Any] = {}
    for j, name in enumerate(meta["numeric"] + meta["categorical"]):
        out[name] = {"statistic": float(data["distance"][j]), "p_value": float(data["p_val"][j]),
                     "p_value_dtype": str(np.asarray(data["p_val"]).dtype),
                     "drifted": bool(data["is_drift"][j])}  # fmt: skip
    return {"version": f"alibi-detect {alibi_detect.__version__}", "fit_seconds": fit,
            "check_seconds": check, "loaded_rss_mb": loaded, "features": out}  # fmt: skip


RUNNERS = {
    "scipy": run_scipy,
    "mlwarden": run_mlwarden,
    "mlwarden_serial": run_mlwarden_serial,
    "mlwarden_daemon": run_mlwarden_daemon,
    "evidently": run_evidently,
    "nannyml": run_nannyml,
    "alibi": run_alibi,
}


# --- orchestration ---------------------------------------------------------------------


def peer_python(name: str) -> Path:
    """The peer's venv interpreter, creating the venv and installing the peer if needed."""
    venv = PEERS_DIR / name
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    wanted = " ".join(PEERS[name])
    if marker.exists() and marker.read_text() == wanted:
        return python
    print(f"installing {wanted} into {venv} ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PEERS[name]], check=True)
    marker.write_text(wanted)
    return python


def run_tool(tool: str, directory: Path, timeout: float) -> dict[str, Any]:
    python = peer_python(tool) if tool in PEERS else Path(sys.executable)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               MLFLOW_DISABLE_TELEMETRY="true", MLWARDEN_DISABLE_PLUGIN_AUTOLOAD="1")  # fmt: skip
    try:
        proc = subprocess.run(
            [str(python), str(Path(__file__).resolve()), "--run", tool, "--data", str(directory)],
            capture_output=True, text=True, env=env, timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        why = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        return {"error": why[0]}
    return json.loads(lines[-1])


def report(meta: dict[str, Any], results: dict[str, dict[str, Any]], size: str) -> str:
    truth = meta["truth"]
    features = len(truth)
    values = meta["cur_rows"] * features
    base = results.get("mlwarden", {}).get("check_seconds")
    lines = [
        f"size {size}: reference {meta['ref_rows']:,} rows, current {meta['cur_rows']:,} rows, "
        f"{len(meta['numeric'])} numeric + {len(meta['categorical'])} categorical features "
        f"({sum(truth.values())} shifted)",
        "",
        "| tool | version | fit s | check s | values/s | peak RSS MB | check time / mlwarden's "
        "| verdicts right | false alarms | missed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for tool, result in results.items():
        if "error" in result:
            lines.append(f"| {tool} | error: {result['error'][:80]} |" + " |" * 8)
            continue
        seconds = result["check_seconds"]
        verdicts = {n: f["drifted"] for n, f in result["features"].items()}
        right = sum(verdicts.get(n) == t for n, t in truth.items())
        false_alarms = sum(bool(verdicts.get(n)) and not t for n, t in truth.items())
        missed = sum(t and not verdicts.get(n) for n, t in truth.items())
        ratio = f"{seconds / base:.1f}x" if base else "-"
        lines.append(
            f"| {tool} | {result['version']} | {result['fit_seconds']:.2f} | {seconds:.3f} | "
            f"{values / seconds:,.0f} | {result['peak_rss_mb']:,.0f} | {ratio} | "
            f"{right}/{features} | {false_alarms} | {missed} |"
        )
    ours, plain = results.get("mlwarden", {}), results.get("scipy", {})
    if "features" in ours and "features" in plain:
        same_statistic = all(
            ours["features"][n]["statistic"] == plain["features"][n]["statistic"]
            for n in meta["numeric"]
        )
        worst = max(
            abs(ours["features"][n]["p_value"] - plain["features"][n]["p_value"])
            / plain["features"][n]["p_value"]
            for n in meta["numeric"] + meta["categorical"]
            if plain["features"][n]["p_value"] > 1e-300
        )
        lines += [
            "",
            f"mlwarden vs the scipy loop: KS statistics identical: {same_statistic}; "
            f"largest relative p-value difference (KS asymptotic and chi2): {worst:.1e}",
        ]
    if base:
        goals = []
        for peer, goal in GOALS.items():
            seconds = results.get(peer, {}).get("check_seconds")
            if seconds:
                verdict = "met" if seconds / base >= goal else "NOT met"
                goals.append(f"{peer} {seconds / base:.1f}x (goal >= {goal:g}x: {verdict})")
        if goals:
            lines += ["", "check time of the peer / mlwarden's: " + "; ".join(goals)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument("--peers", default=",".join(TOOLS), help="comma-separated tools")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per tool")
    parser.add_argument("--run", choices=TOOLS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:  # inside a tool's subprocess
        result = RUNNERS[args.run](args.data)
        result["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(result))
        return
    tools = [t for t in args.peers.split(",") if t]
    unknown = sorted(set(tools) - set(TOOLS))
    if unknown:
        parser.error(f"unknown tools {unknown}; choose from {', '.join(TOOLS)}")
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="drift-bench-") as tmp:
        directory = Path(tmp)
        meta = make_data(directory, *SIZES[args.size])
        results = {}
        for tool in tools:
            print(f"running {tool} ...", file=sys.stderr, flush=True)
            results[tool] = run_tool(tool, directory, args.timeout)
        print(f"$ python benchmarks/drift.py --size {args.size} --peers {args.peers}\n")
        print("load average at start: {:.2f} {:.2f} {:.2f}; after: {:.2f} {:.2f} {:.2f}\n".format(
            *load, *os.getloadavg()))  # fmt: skip
        print(report(meta, results, args.size))


if __name__ == "__main__":
    main()
