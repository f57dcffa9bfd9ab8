"""Fitted customer-value models (METRICS.md §13): sBG, BG/NBD and Gamma-Gamma.

The scikit-learn habit: parameters in ``__init__``, ``fit`` returns self, learned values end
in ``_``, and using a model before it is fitted raises :class:`~csmetrics.NotFittedError`
(a model whose learned attributes are set by hand is usable). Every fit is maximum
likelihood with the closed-form log-likelihoods of the papers, computed with log-gamma and
log-beta functions (stable for large counts), optimized over the logs of the parameters
(so they stay positive) with L-BFGS-B from a grid of starts; a fit that does not converge,
or data that cannot identify the model (no churn, no repeat purchase), raises
:class:`ModelFitError` naming the reason.

- :class:`ShiftedBetaGeometric` (Fader & Hardie 2007): contractual retention from the
  number of customers still active at periods 0, 1, 2, ...
- :class:`BetaGeoModel` (BG/NBD, Fader, Hardie & Lee 2005) and :class:`GammaGammaModel`
  (Fader, Hardie & Lee 2005; Fader & Hardie 2013): repeat purchases and spend per purchase
  from an RFM summary (frequency, recency, T, monetary_value).
- :func:`predictive_clv`: discounted expected margin per customer over a horizon of months.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from csmetrics._compat import lazy_module, one_blas_thread
from csmetrics.options import ConfigError, NotFittedError, check_number

__all__ = [
    "DAYS_PER_MONTH",
    "UNIT_DAYS",
    "customer_value_table",
    "BetaGeoModel",
    "GammaGammaModel",
    "ModelFitError",
    "ShiftedBetaGeometric",
    "predictive_clv",
]

DAYS_PER_MONTH = 30.4375
#: Days per time unit of an RFM summary.
UNIT_DAYS = {"D": 1.0, "W": 7.0, "M": DAYS_PER_MONTH}


# scipy is imported on first use (a fit or a curve): ``import csmetrics`` stays fast (notebooks,
# the CLI's cold start)
optimize = lazy_module("scipy.optimize")
special = lazy_module("scipy.special")


class ModelFitError(ValueError):
    """Data a model cannot be fitted on, or a fit that did not converge."""


def _check_fitted(model: Any, names: Sequence[str]) -> None:
    missing = [n for n in names if getattr(model, n, None) is None]
    if missing:
        raise NotFittedError(f"{type(model).__name__} is not fitted (no {', '.join(missing)}): call fit() first")


#: L-BFGS-B's stopping rule: its default (a relative change of 2.2e-9 in the likelihood) stops where
#: the likelihood is flat before the optimum, at a point that moves with scipy's version (CDNOW's
#: Gamma-Gamma gamma 15.4467 against the optimum 15.4478 under scipy 1.17)
_TOLERANCE = {"ftol": 1e-14, "gtol": 1e-9}


def _maximize(
    negative_ll, starts: Sequence[Sequence[float]], what: str, bounds: Sequence[tuple] | None = None
) -> tuple[list[float], float]:
    """Minimize a negative log-likelihood over log-parameters: from the first start, and from the
    others only when that fit fails (they guard against a bad start, at a cost per start).
    ``bounds``: (low, high) per log-parameter, None for no bound. BLAS runs on one thread meanwhile."""
    best = None
    with one_blas_thread():
        for start in starts:
            with np.errstate(all="ignore"):
                result = optimize.minimize(
                    negative_ll, np.asarray(start, dtype=float), method="L-BFGS-B", bounds=bounds, options=_TOLERANCE
                )
            if np.isfinite(result.fun) and (best is None or result.fun < best.fun):
                best = result
            if best is not None and (best.success or _flat(negative_ll, best.x)) and np.all(np.abs(best.x) <= 30):
                break
        converged = best is not None and (best.success or _flat(negative_ll, best.x))
    if best is None or not converged:
        reason = "no finite likelihood" if best is None else best.message
        raise ModelFitError(f"{what}: the maximum-likelihood fit did not converge ({reason})")
    if np.any(np.abs(best.x) > 30):
        raise ModelFitError(
            f"{what}: the data do not identify the model (a parameter runs off to {np.exp(best.x).round(6).tolist()})"
        )
    return [float(v) for v in np.exp(best.x)], -float(best.fun)


def _distinct(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The distinct rows of the columns and how often each occurs: a likelihood summed over
    customers is a weighted sum over distinct (frequency, recency, T) rows."""
    stacked = np.column_stack(columns)
    unique, counts = np.unique(stacked, axis=0, return_counts=True)
    return [unique[:, i] for i in range(unique.shape[1])], counts.astype(float)


def _flat(fn, x: np.ndarray) -> bool:
    """L-BFGS-B may stop with an 'abnormal' line search at an optimum: accept a point whose
    gradient (central differences) is negligible."""
    step = 1e-5
    grad = [(fn(x + step * e) - fn(x - step * e)) / (2 * step) for e in np.eye(len(x))]
    return bool(np.all(np.abs(grad) < 1e-2))


def _array(values: Any, name: str, *, integer: bool = False, low: float = 0.0) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be numbers, not {values!r}") from None
    if array.ndim != 1 or not np.isfinite(array).all() or (array < low).any():
        raise ConfigError(f"{name} must be a list of finite numbers >= {low:g}")
    if integer and (array != np.round(array)).any():
        raise ConfigError(f"{name} must be whole numbers")
    return array


# --------------------------------------------------------------------------
# sBG
# --------------------------------------------------------------------------
class ShiftedBetaGeometric:
    """The shifted-beta-geometric retention model (Fader & Hardie 2007).

    Each customer churns at the end of a period with a constant probability theta, and theta
    varies across customers as Beta(alpha, beta).

    Examples
    --------
    >>> model = ShiftedBetaGeometric().fit([1000, 631, 468, 382, 326, 289, 262, 241])
    >>> round(model.alpha_, 3), round(model.beta_, 3)
    (0.704, 1.182)
    """

    def __init__(self) -> None:
        self.alpha_: float | None = None
        self.beta_: float | None = None
        self.log_likelihood_: float | None = None

    @staticmethod
    def log_likelihood(alpha: float, beta: float, survivors: Any) -> float:
        """Log-likelihood of survivor counts (active at periods 0, 1, ..., K)."""
        n = np.asarray(survivors, dtype=float)
        t = np.arange(1, len(n))
        lost = n[:-1] - n[1:]
        log_b = special.betaln(alpha, beta)
        churn = special.betaln(alpha + 1, beta + t - 1) - log_b  # P(T = t)
        stay = special.betaln(alpha, beta + len(n) - 1) - log_b  # S(K)
        return float(np.sum(np.where(lost > 0, lost * churn, 0.0)) + (n[-1] * stay if n[-1] > 0 else 0.0))

    def fit(self, survivors: Any) -> ShiftedBetaGeometric:
        """Fit on one cohort's survivors (a sequence) or several cohorts' (a list of sequences, their
        log-likelihoods summed: the pooled fit)."""
        cohorts = [survivors] if np.ndim(survivors[0]) == 0 else list(survivors)
        checked = []
        for counts in cohorts:
            n = _array(counts, "survivors", integer=True)
            if len(n) < 2 or n[0] <= 0:
                raise ModelFitError("survivors: need the customers at period 0 (> 0) and at least one later period")
            if (np.diff(n) > 0).any():
                raise ConfigError("survivors must not increase: a first churn ends a lifetime")
            checked.append(n)
        if all(n[-1] == n[0] for n in checked):
            raise ModelFitError("survivors: no customer churned, so the churn distribution cannot be identified")

        def negative(x: np.ndarray) -> float:
            a, b = np.exp(x)
            return -float(np.sum([self.log_likelihood(a, b, n) for n in checked]))

        (self.alpha_, self.beta_), self.log_likelihood_ = _maximize(
            negative, [(0.0, 0.0), (-1.0, 1.0), (1.0, 2.0)], "ShiftedBetaGeometric"
        )
        return self

    def _params(self) -> tuple[float, float]:
        _check_fitted(self, ("alpha_", "beta_"))
        return float(self.alpha_), float(self.beta_)  # type: ignore[arg-type]

    def survival(self, t: Any) -> np.ndarray:
        """S(t) = B(alpha, beta + t) / B(alpha, beta): the share still active after t periods."""
        a, b = self._params()
        t = np.asarray(t, dtype=float)
        return np.exp(special.betaln(a, b + t) - special.betaln(a, b))

    def retention(self, t: Any) -> np.ndarray:
        """r(t) = (beta + t - 1) / (alpha + beta + t - 1), t >= 1: the share of period t-1's survivors
        still active at t."""
        a, b = self._params()
        t = np.asarray(t, dtype=float)
        if (t < 1).any():
            raise ConfigError("retention(t) needs t >= 1")
        return (b + t - 1) / (a + b + t - 1)

    def derl(self, renewals: Any, discount_rate: float) -> np.ndarray:
        """Discounted expected residual lifetime of a customer who has renewed ``renewals`` times,
        valued just before its next renewal decision (Fader & Hardie 2010): the sum over t > n of
        S(t) / S(n) / (1 + d)^(t - n - 1). Infinite when d = 0 and alpha <= 1."""
        a, b = self._params()
        d = check_number("discount_rate", discount_rate, low=0)
        n = np.atleast_1d(np.asarray(renewals, dtype=float))
        if (n < 0).any() or (n != np.round(n)).any():
            raise ConfigError("renewals must be whole numbers >= 0")
        if d == 0:
            # sum_{t >= m} B(a, b + t) = B(a - 1, b + m) (telescoping), finite for a > 1
            value = (
                np.exp(special.betaln(a - 1, b + n + 1) - special.betaln(a, b + n))
                if a > 1
                else np.full(len(n), np.inf)
            )
        else:
            terms = int(min(math.ceil(math.log(1e15) / math.log1p(d)) + 1, 5_000_000))
            k = np.arange(terms, dtype=float)
            value = np.array(
                [
                    np.sum(np.exp(special.betaln(a, b + m + 1 + k) - special.betaln(a, b + m) - k * math.log1p(d)))
                    for m in n
                ]
            )
        return value if np.ndim(renewals) else value[0]

    def expected_residual_lifetime(self, renewals: Any) -> np.ndarray:
        """Expected further periods of a customer who has renewed ``renewals`` times: derl at 0%."""
        return self.derl(renewals, 0.0)


# --------------------------------------------------------------------------
# BG/NBD and Gamma-Gamma
# --------------------------------------------------------------------------
def _summary_arrays(summary: pd.DataFrame, columns: Sequence[str]) -> list[np.ndarray]:
    if not isinstance(summary, pd.DataFrame):
        raise ConfigError(f"summary must be a DataFrame (csmetrics.rfm_summary), not {type(summary).__name__}")
    missing = [c for c in columns if c not in summary]
    if missing:
        raise ConfigError(f"summary: missing column(s) {missing} (expected those of csmetrics.rfm_summary)")
    arrays = [_array(summary[c].to_numpy(), f"summary.{c}") for c in columns]
    if "frequency" in columns:
        _array(summary["frequency"].to_numpy(), "summary.frequency", integer=True)
    if {"recency", "T"} <= set(columns):
        recency, age = arrays[list(columns).index("recency")], arrays[list(columns).index("T")]
        if (recency > age + 1e-9).any():
            raise ConfigError("summary: recency must not exceed T")
    return arrays


class BetaGeoModel:
    """BG/NBD (Fader, Hardie & Lee 2005): purchases at a Poisson rate lambda ~ Gamma(r, alpha)
    while alive; after each purchase the customer drops out with probability p ~ Beta(a, b).

    Examples
    --------
    >>> import pandas as pd
    >>> model = BetaGeoModel()
    >>> model.r_, model.alpha_, model.a_, model.b_ = 0.243, 4.414, 0.793, 2.426
    >>> summary = pd.DataFrame({"frequency": [2], "recency": [30.43], "T": [38.86]})
    >>> round(float(model.expected_purchases(summary, 39)[0]), 3)
    1.226
    """

    def __init__(self) -> None:
        self.r_: float | None = None
        self.alpha_: float | None = None
        self.a_: float | None = None
        self.b_: float | None = None
        self.log_likelihood_: float | None = None

    @staticmethod
    def log_likelihood(
        r: float, alpha: float, a: float, b: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        """Per-customer log-likelihood (Fader, Hardie & Lee 2005, eq. 6)."""
        a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
        a2 = special.gammaln(a + b) + special.gammaln(b + x) - special.gammaln(b) - special.gammaln(a + b + x)
        a3 = -(r + x) * np.log(alpha + T)
        with np.errstate(divide="ignore", invalid="ignore"):
            a4 = np.where(x > 0, np.log(a) - np.log(b + x - 1) - (r + x) * np.log(alpha + t_x), -np.inf)
        return a1 + a2 + np.logaddexp(a3, a4)

    def fit(self, summary: pd.DataFrame) -> BetaGeoModel:
        """Fit on an RFM summary (frequency, recency, T in one time unit)."""
        x, t_x, T = _summary_arrays(summary, ("frequency", "recency", "T"))
        if not len(x):
            raise ModelFitError("BetaGeoModel: the summary has no customers (no one-time purchases by as_of)")
        if not (x > 0).any():
            raise ModelFitError("BetaGeoModel: no customer made a repeat purchase, so the model cannot be identified")
        if (T <= 0).all():
            raise ModelFitError("BetaGeoModel: every customer's T is 0 (first purchase at as_of)")

        (x, t_x, T), weight = _distinct(x, t_x, T)
        log_likelihood = _bgnbd_log_likelihood(x, t_x, T)

        def negative(params: np.ndarray) -> float:
            r, alpha, a, b = np.exp(params)
            return -float(weight @ log_likelihood(r, alpha, a, b))

        scale = max(float(np.mean(T)), 1e-3)
        starts = [(0.0, math.log(scale), 0.0, 0.0), (-1.0, math.log(scale / 4), -0.5, 0.5), (0.5, 0.0, 0.5, 1.0)]
        (self.r_, self.alpha_, self.a_, self.b_), self.log_likelihood_ = _maximize(negative, starts, "BetaGeoModel")
        return self

    def _params(self) -> tuple[float, float, float, float]:
        _check_fitted(self, ("r_", "alpha_", "a_", "b_"))
        return float(self.r_), float(self.alpha_), float(self.a_), float(self.b_)  # type: ignore[arg-type]

    def probability_alive(self, summary: pd.DataFrame) -> np.ndarray:
        """P(alive at T | frequency, recency, T)."""
        r, alpha, a, b = self._params()
        x, t_x, T = _summary_arrays(summary, ("frequency", "recency", "T"))
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):  # x = 0 rows are masked below
            log_ratio = np.log(a) - np.log(b + x - 1) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
        return np.where(x > 0, 1.0 / (1.0 + np.exp(np.minimum(log_ratio, 700))), 1.0)

    def expected_purchases_new(self, t: Any) -> np.ndarray:
        """E[X(t)]: expected repeat purchases of a new customer by time t."""
        r, alpha, a, b = self._params()
        t = np.asarray(t, dtype=float)
        hyp = special.hyp2f1(r, b, a + b - 1, t / (alpha + t))
        return (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp)

    def expected_purchases(self, summary: pd.DataFrame, t: float) -> np.ndarray:
        """E[Y(t) | frequency, recency, T]: expected purchases in (T, T + t] (eq. 10)."""
        r, alpha, a, b = self._params()
        x, t_x, T = _summary_arrays(summary, ("frequency", "recency", "T"))
        t = check_number("t", t, low=0)
        z = t / (alpha + T + t)
        hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, z)
        numerator = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp)
        with np.errstate(divide="ignore", over="ignore"):
            odds = np.where(x > 0, a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0)
        return numerator / (1 + odds)


def _bgnbd_log_likelihood(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> Callable[..., np.ndarray]:
    """:meth:`BetaGeoModel.log_likelihood` of fixed data as a function of (r, alpha, a, b), equal to it
    bit for bit: each term is computed once per distinct value of the column it reads (a few hundred
    frequencies, recencies and ages for hundreds of thousands of customers) and gathered, in the same
    operations in the same order. The fit evaluates it a few hundred times; the gamma functions of
    every row were most of its time (49 s of the whole large report's client)."""
    xs, at_x = np.unique(x, return_inverse=True)
    ts, at_t = np.unique(t_x, return_inverse=True)
    ages, at_age = np.unique(T, return_inverse=True)
    repeat = x > 0

    def log_likelihood(r: float, alpha: float, a: float, b: float) -> np.ndarray:
        a1 = (special.gammaln(r + xs) - special.gammaln(r) + r * np.log(alpha))[at_x]
        a2 = (special.gammaln(a + b) + special.gammaln(b + xs) - special.gammaln(b) - special.gammaln(a + b + xs))[at_x]
        a3 = (-(r + xs))[at_x] * np.log(alpha + ages)[at_age]
        with np.errstate(divide="ignore", invalid="ignore"):
            spent = (r + xs)[at_x] * np.log(alpha + ts)[at_t]
            a4 = np.where(repeat, (np.log(a) - np.log(b + xs - 1))[at_x] - spent, -np.inf)
        return a1 + a2 + np.logaddexp(a3, a4)

    return log_likelihood


#: the Gamma-Gamma fit's cap on log q. The customers' spend rates nu ~ Gamma(q, gamma) have a
#: coefficient of variation 1 / sqrt(q): at q = e^20 it is 5e-5, no heterogeneity to speak of. When
#: the data show none (the likelihood rises toward q, gamma -> infinity with gamma / q fixed, and is
#: flat there), the fit stops on that ridge at the cap or before it instead of running off, and every
#: customer's expected spend is close to the population mean p gamma / (q - 1), which tends to the
#: purchase-weighted mean spend sum(x m) / sum(x).
LOG_Q_MAX = 20.0


class GammaGammaModel:
    """Gamma-Gamma spend model (Fader, Hardie & Lee 2005; Fader & Hardie 2013): a customer's
    purchase amounts are Gamma(p, nu) and nu ~ Gamma(q, gamma) across customers; fitted on the
    customers with repeat purchases (frequency > 0), their mean repeat spend monetary_value.

    Examples
    --------
    >>> import pandas as pd
    >>> model = GammaGammaModel()
    >>> model.p_, model.q_, model.gamma_ = 6.25, 3.74, 15.44
    >>> summary = pd.DataFrame({"frequency": [0, 2], "monetary_value": [0.0, 22.35]})
    >>> model.expected_spend(summary).round(2).tolist()
    [35.22, 24.66]
    """

    def __init__(self) -> None:
        self.p_: float | None = None
        self.q_: float | None = None
        self.gamma_: float | None = None
        self.log_likelihood_: float | None = None

    @staticmethod
    def log_likelihood(p: float, q: float, gamma: float, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """Per-customer log-likelihood of the mean spend m of x repeat purchases (Fader & Hardie 2013)."""
        px = p * x
        return (
            special.gammaln(px + q)
            - special.gammaln(px)
            - special.gammaln(q)
            + q * np.log(gamma)
            + (px - 1) * np.log(m)
            + px * np.log(x)
            - (px + q) * np.log(gamma + x * m)
        )

    def fit(self, summary: pd.DataFrame) -> GammaGammaModel:
        x, m = _summary_arrays(summary, ("frequency", "monetary_value"))
        keep = (x > 0) & (m > 0)
        if keep.sum() < 2:
            raise ModelFitError("GammaGammaModel: needs at least 2 customers with repeat purchases of positive value")
        (x, m), weight = _distinct(x[keep], m[keep])

        def negative(params: np.ndarray) -> float:
            p, q, gamma = np.exp(params)
            return -float(weight @ self.log_likelihood(p, q, gamma, x, m))

        mean = float(np.mean(m))
        starts = [(0.0, 0.5, math.log(mean)), (1.0, 1.0, math.log(mean)), (2.0, 1.5, 1.0)]
        bounds = [(None, None), (None, LOG_Q_MAX), (None, None)]
        (self.p_, self.q_, self.gamma_), self.log_likelihood_ = _maximize(negative, starts, "GammaGammaModel", bounds)
        return self

    def expected_spend(self, summary: pd.DataFrame) -> np.ndarray:
        """E[mean spend per purchase | frequency, monetary_value]; the population mean
        p gamma / (q - 1) for customers without repeat purchases."""
        _check_fitted(self, ("p_", "q_", "gamma_"))
        p, q, gamma = float(self.p_), float(self.q_), float(self.gamma_)  # type: ignore[arg-type]
        x, m = _summary_arrays(summary, ("frequency", "monetary_value"))
        if q <= 1:
            raise ModelFitError(f"GammaGammaModel: q = {q:.4g} <= 1, so the expected spend is infinite")
        return p * (gamma + x * m) / (p * x + q - 1)


def predictive_clv(
    summary: pd.DataFrame,
    purchases: BetaGeoModel | None = None,
    spend: GammaGammaModel | None = None,
    *,
    horizon_months: int = 12,
    discount_rate: float = 0.01,
    margin: float = 1.0,
    unit: str | None = None,
) -> np.ndarray:
    """Per customer: sum over months m = 1..H of margin x expected spend per purchase x expected
    purchases in month m / (1 + discount_rate)^m, a month being 30.4375 days (§13).

    ``purchases`` and ``spend`` are fitted on ``summary`` when not given; ``unit`` is the summary's
    time unit (default: ``summary.attrs["unit"]``, else weeks).
    """
    months = int(check_number("horizon_months", horizon_months, low=1))
    if months != horizon_months:
        raise ConfigError(f"horizon_months must be a whole number, not {horizon_months!r}")
    rate = check_number("discount_rate", discount_rate, low=0)
    margin = check_number("margin", margin, low=0, high=1, low_open=True)
    unit = unit or summary.attrs.get("unit", "W")
    if unit not in UNIT_DAYS:
        raise ConfigError(f"unit must be one of {', '.join(UNIT_DAYS)}, not {unit!r}")
    purchases = purchases if purchases is not None else BetaGeoModel().fit(summary)
    spend = spend if spend is not None else GammaGammaModel().fit(summary)
    month = DAYS_PER_MONTH / UNIT_DAYS[unit]
    cumulative = [np.zeros(len(summary))] + [
        purchases.expected_purchases(summary, m * month) for m in range(1, months + 1)
    ]
    per_month = np.diff(np.vstack(cumulative), axis=0)
    discount = (1 + rate) ** -np.arange(1, months + 1)
    with one_blas_thread():
        discounted = discount @ per_month
    return margin * spend.expected_spend(summary) * discounted


def customer_value_table(
    summary: pd.DataFrame, *, horizon_months: int = 12, discount_rate: float = 0.01, margin: float = 1.0
) -> tuple[pd.DataFrame, dict[str, float]]:
    """The report's clv.parquet: the RFM summary with P(alive), expected purchases and spend over the
    horizon and predictive_clv, from BG/NBD and Gamma-Gamma fitted on it; and the fitted parameters.
    Raises :class:`ModelFitError` when the data cannot support the fits."""
    unit = summary.attrs.get("unit", "W")
    purchases = BetaGeoModel().fit(summary)
    spend = GammaGammaModel().fit(summary)
    out = summary.copy()
    out["probability_alive"] = purchases.probability_alive(summary)
    horizon = horizon_months * DAYS_PER_MONTH / UNIT_DAYS[unit]
    out["expected_purchases"] = purchases.expected_purchases(summary, horizon)
    out["expected_spend"] = spend.expected_spend(summary)
    out["predictive_clv"] = predictive_clv(
        summary, purchases, spend, horizon_months=horizon_months, discount_rate=discount_rate, margin=margin, unit=unit
    )
    params = {
        name: float(getattr(model, f"{name}_"))
        for model, names in ((purchases, ("r", "alpha", "a", "b")), (spend, ("p", "q", "gamma")))
        for name in names
    }
    return out, params
