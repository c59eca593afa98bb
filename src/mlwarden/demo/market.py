"""A simulated BTC/USDT market: geometric Brownian motion with regime switches.

Each step is one (simulated) hour. A regime sets the drift and volatility of log
returns and how strongly the next return follows the recent trend, so a model fitted
in one regime loses accuracy in another, and its input features drift.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["FEATURES", "REGIMES", "Market", "Regime"]

#: Model inputs, all computable from the price history at prediction time.
FEATURES = ("ret_1h", "ret_6h", "ret_24h", "vol_24h", "funding_rate")


@dataclass(frozen=True)
class Regime:
    name: str
    drift: float  # mean log return per step
    vol: float  # std of log return per step
    momentum: float  # weight of the last 6h return in the next return


REGIMES = {
    "calm": Regime("calm", drift=0.0001, vol=0.004, momentum=0.08),
    # Strong mean reversion: a model fitted on the calm regime gets the sign wrong.
    "volatile": Regime("volatile", drift=-0.0008, vol=0.016, momentum=-0.5),
}


class Market:
    """Generates prices step by step; ``features()`` gives the model's inputs now."""

    def __init__(self, seed: int = 7, price: float = 60_000.0, regime: str = "calm") -> None:
        self.rng = np.random.default_rng(seed)
        self.price = price
        self.regime = REGIMES[regime]
        self.returns: deque[float] = deque([0.0] * 24, maxlen=24)
        self.funding = 0.0001
        self.t = 0

    def switch(self, regime: str) -> None:
        self.regime = REGIMES[regime]

    def features(self) -> dict[str, float]:
        r = np.fromiter(self.returns, float)
        return {
            "ret_1h": float(r[-1]),
            "ret_6h": float(r[-6:].sum()),
            "ret_24h": float(r.sum()),
            "vol_24h": float(r.std()),
            "funding_rate": float(self.funding),
        }

    def step(self) -> float:
        """Advance one hour; return the log return just realised (the label)."""
        g = self.regime
        trend = float(np.fromiter(self.returns, float)[-6:].sum())
        ret = g.drift + g.momentum * trend + g.vol * self.rng.standard_normal()
        self.returns.append(ret)
        self.price *= float(np.exp(ret))
        self.funding = 0.9 * self.funding + 0.1 * (trend * 0.05) + 2e-5 * self.rng.standard_normal()
        self.t += 1
        return ret

    def history(self, steps: int) -> pd.DataFrame:
        """``steps`` rows of features and the next return (``target``), advancing the market."""
        rows = []
        for _ in range(steps):
            row = self.features()
            row["target"] = self.step()
            rows.append(row)
        return pd.DataFrame(rows, columns=[*FEATURES, "target"])
