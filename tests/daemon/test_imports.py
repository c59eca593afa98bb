"""The daemon imports no heavy module it can do without (docs/operations.md, memory)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# scipy.stats costs a daemon about 35 MB of RSS; it is imported only by what needs it
# (an exact KS test on a small sample, a KS p-value for n <= 140, a Mann-Whitney test of
# an experiment).
PROBE = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    import mlwarden
    for info in pkgutil.walk_packages(mlwarden.__path__, "mlwarden."):
        if not info.name.startswith(("mlwarden.demo", "mlwarden.__main__")):
            importlib.import_module(info.name)
    print(sorted(m for m in sys.modules if m.startswith("scipy.stats")))
    """
)


def test_no_mlwarden_module_imports_scipy_stats():
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_scipy_stats_comes_when_a_test_needs_it():
    probe = (
        "import sys, numpy as np\n"
        "from mlwarden.stats import mann_whitney\n"
        "assert 'scipy.stats' not in sys.modules\n"
        "mann_whitney(np.arange(10.0), np.arange(10.0) + 3)\n"
        "assert 'scipy.stats' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=300)


def test_ks_p_values_above_n_140_need_no_scipy_stats():
    # Every branch of kstwo.sf for n > 140 is mlwarden's own: a check of large samples
    # never brings scipy.stats (a daemon's memory stays the same from check to check).
    probe = (
        "import sys\n"
        "from mlwarden.stats.kolmogorov import kolmogorov_sf\n"
        "for n, d in [(5000, 0.0), (5000, 1.0), (5000, 1e-4), (5000, 1.5e-4), (200, 0.996),\n"
        "             (5000, 0.003),\n"
        "             (5000, 0.005), (5000, 0.015), (5000, 0.05), (5000, 0.3), (5000, 0.6),\n"
        "             (2_000_000, 0.001)]:\n"
        "    kolmogorov_sf(d, n)\n"
        "assert 'scipy.stats' not in sys.modules\n"
        "kolmogorov_sf(0.1, 100)\n"
        "assert 'scipy.stats' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=300)
