"""The fitted value models (METRICS.md §13) against the published values (../shared/data/README_clv.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import csmetrics
from csmetrics import BetaGeoModel, GammaGammaModel, ModelFitError, NotFittedError, ShiftedBetaGeometric
from csmetrics.options import ConfigError


def cdnow_billing(shared) -> pd.DataFrame:
    raw = pd.read_csv(shared / "cdnow_sample_transactions.csv")
    return pd.DataFrame(
        {"customer_id": raw["customer_id"], "kind": "one_time", "amount": raw["amount"].astype(float), "invoiced_at": raw["date"]}
    )


@pytest.fixture(scope="module")
def cdnow(request):
    shared = request.getfixturevalue("shared_data")
    billing = cdnow_billing(shared)
    calibration = billing[billing["invoiced_at"] < "1997-10-01"]
    summary = csmetrics.rfm_summary(calibration, as_of="1997-09-30", unit="W")
    published = pd.read_csv(shared / "cdnow_sample_rfm_summary.csv")
    return summary, published


# --------------------------------------------------------------------------
# rfm_summary reproduces the published summary from the transactions
# --------------------------------------------------------------------------
def test_rfm_summary_reproduces_the_cdnow_summary(cdnow):
    summary, published = cdnow
    assert len(summary) == 2357 and summary.attrs["unit"] == "W"
    merged = summary.merge(published, on="customer_id", suffixes=("", "_published"))
    assert len(merged) == 2357
    assert (merged["frequency"] == merged["frequency_published"]).all()
    # the file rounds to two decimals (half-up); ours are unrounded
    for column in ("recency", "T", "monetary_value"):
        assert (merged[column] - merged[f"{column}_published"]).abs().max() <= 0.005 + 1e-9, column
    first = summary.set_index("customer_id").loc[1]
    assert first["T"] == pytest.approx(272 / 7)  # first seen 1997-01-01, as_of 1997-09-30
    assert (summary["frequency"] > 0).sum() == 946


def test_rfm_summary_rules_by_hand():
    billing = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "b", "c"],
            "kind": ["one_time", "one_time", "one_time", "refund", "one_time", "recurring"],
            "amount": [10.0, 4.0, 0.0, 3.0, 8.0, 100.0],
            # a: two lines on Jan 1 (one day, 14), a zero-amount purchase on Jan 8 (counts), a refund (not)
            "invoiced_at": ["2024-01-01 09:00", "2024-01-01 23:00", "2024-01-08", "2024-01-09", "2024-01-31 23:30", "2024-01-01"],
            "service_start": [None, None, None, None, None, "2024-01-01"],
            "service_end": [None, None, None, None, None, "2024-02-01"],
        }
    )
    days = csmetrics.rfm_summary(billing, as_of="2024-01-31 23:59", unit="D").set_index("customer_id")
    assert days.loc["a"].tolist() == [1, 7.0, 30.0, 0.0]  # repeat day total 0
    assert days.loc["b"].tolist() == [0, 0.0, 0.0, 0.0]
    assert "c" not in days.index  # subscriptions are not purchases
    # local days in New York (UTC-5): a's lines at 09:00 and 23:00 UTC are Jan 1 04:00 and 18:00 (one day);
    # the Jan 8 00:00 UTC purchase is Jan 7 19:00 local; as_of is Jan 31 18:59 local
    ny = csmetrics.rfm_summary(billing, as_of="2024-01-31 23:59", unit="D", tz="America/New_York").set_index("customer_id")
    assert ny.loc["a"].tolist() == [1, 6.0, 30.0, 0.0]
    assert ny.loc["b"].tolist() == [0, 0.0, 0.0, 0.0]
    months = csmetrics.rfm_summary(billing, as_of="2024-01-31 23:59", unit="M").set_index("customer_id")
    assert months.loc["a", "T"] == pytest.approx(30 / 30.4375)
    with pytest.raises(ConfigError, match="unit must be one of D, W, M"):
        csmetrics.rfm_summary(billing, unit="weeks")


# --------------------------------------------------------------------------
# BG/NBD and Gamma-Gamma: Fader, Hardie & Lee (2005)
# --------------------------------------------------------------------------
def test_bgnbd_on_the_cdnow_summary_gives_the_published_parameters(cdnow):
    _, published = cdnow
    model = BetaGeoModel().fit(published)
    for name, value in (("r_", 0.243), ("alpha_", 4.414), ("a_", 0.793), ("b_", 2.426)):
        assert getattr(model, name) == pytest.approx(value, abs=0.0015), name
    assert model.log_likelihood_ == pytest.approx(-9582.4256, abs=1e-3)


def test_fits_run_blas_on_one_thread_and_give_the_threads_back(cdnow, monkeypatch):
    # OpenBLAS's threads, woken by L-BFGS-B's tiny calls, spun on the core the report's families use
    # (a fit took 2x its CPU), and a threaded dot product made the fit depend on the core count
    import scipy.optimize
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads() -> dict[str, int]:
        return {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    seen, real = [], scipy.optimize.minimize

    def recording(*args, **kwargs):
        seen.append(blas_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(scipy.optimize, "minimize", recording)
    summary, published = cdnow
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        purchases = BetaGeoModel().fit(published)
        spend = GammaGammaModel().fit(summary)
        after = blas_threads()
    assert len(seen) >= 2 and all(threads and set(threads.values()) == {1} for threads in seen), seen
    assert after == before
    assert purchases.r_ == pytest.approx(0.243, abs=0.0015) and spend.p_ == pytest.approx(6.25, abs=0.01)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 40), st.floats(0, 1), st.floats(0, 300, allow_subnormal=False)), min_size=1, max_size=60
    ),
    params=st.tuples(*[st.floats(1e-6, 1e6) for _ in range(4)]),
)
def test_the_fits_likelihood_is_the_published_formula_bit_for_bit(rows, params):
    """The fit evaluates the BG/NBD likelihood on each distinct frequency, recency and age once
    (the report's CLV fit, 49 s of the large report's client, was the per-row gamma functions):
    the values must be those of the formula (eq. 6) row by row, to the bit, so the fit's path and
    its parameters do not move."""
    from csmetrics.models import _bgnbd_log_likelihood

    x = np.array([r[0] for r in rows], dtype=float)
    T = np.array([r[2] for r in rows]).round(1)  # repeated ages and recencies, as weeks of real data
    t_x = np.where(x > 0, (T * np.array([r[1] for r in rows])).round(1), 0.0)
    p = [np.float64(v) for v in params]
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(_bgnbd_log_likelihood(x, t_x, T)(*p), BetaGeoModel.log_likelihood(*p, x, t_x, T))


def test_bgnbd_on_our_own_summary_too(cdnow):
    summary, _ = cdnow
    model = BetaGeoModel().fit(summary)
    for name, value in (("r_", 0.243), ("alpha_", 4.414), ("a_", 0.793), ("b_", 2.426)):
        assert getattr(model, name) == pytest.approx(value, abs=0.0015), name


def test_bgnbd_expectations_match_hardies_spreadsheet():
    model = BetaGeoModel()
    model.r_, model.alpha_, model.a_, model.b_ = 0.242593, 4.413532, 0.792886, 2.425752
    one = pd.DataFrame({"frequency": [2], "recency": [30.43], "T": [38.86]})
    assert model.expected_purchases(one, 39)[0] == pytest.approx(1.226, abs=0.001)
    new = model.expected_purchases_new([0.1429, 1, 3, 31.8571, 32, 78])
    # the spreadsheet's values (lifetimes' test allows 1.5e-3)
    np.testing.assert_allclose(new, [0.0078, 0.0532, 0.1506, 1.0405, 1.0437, 1.8576], atol=5e-4)
    # P(alive): 1 without repeat purchases; customer 1 of CDNOW (x=2, t_x=30.43, T=38.86) 0.7266 at the fit
    both = pd.DataFrame({"frequency": [0, 2], "recency": [0.0, 30.43], "T": [38.86, 38.86]})
    alive = model.probability_alive(both)
    assert alive[0] == 1.0 and alive[1] == pytest.approx(0.7266, abs=1e-3)


def test_gamma_gamma_gives_the_published_parameters(cdnow):
    summary, published = cdnow
    # the published gamma (15.44) comes from the unrounded means (ours); the file's cent-rounded give 15.448
    model = GammaGammaModel().fit(summary)
    for name, value in (("p_", 6.25), ("q_", 3.74), ("gamma_", 15.44)):
        assert getattr(model, name) == pytest.approx(value, abs=0.01), name
    rounded = GammaGammaModel().fit(published)
    assert rounded.gamma_ == pytest.approx(15.448, abs=0.001)
    # Hardie's spreadsheet (note 025): conditional expected spend of customers 1-10
    expected = model.expected_spend(summary.iloc[:10])
    np.testing.assert_allclose(expected, [24.65, 18.91, 35.17, 35.17, 35.17, 71.46, 18.91, 35.17, 27.28, 35.17], atol=0.01)


def test_predictive_clv_is_the_discounted_sum_by_hand():
    bg = BetaGeoModel()
    bg.r_, bg.alpha_, bg.a_, bg.b_ = 0.243, 4.414, 0.793, 2.426
    gg = GammaGammaModel()
    gg.p_, gg.q_, gg.gamma_ = 6.25, 3.74, 15.44
    summary = pd.DataFrame({"frequency": [2, 0], "recency": [30.43, 0.0], "T": [38.86, 38.86], "monetary_value": [22.35, 0.0]})
    month = 30.4375 / 7
    value = csmetrics.predictive_clv(summary, bg, gg, horizon_months=3, discount_rate=0.02, margin=0.5)
    spend = gg.expected_spend(summary)
    cumulative = [bg.expected_purchases(summary, m * month) for m in (1, 2, 3)]
    by_hand = 0.5 * spend * (cumulative[0] / 1.02 + (cumulative[1] - cumulative[0]) / 1.02**2 + (cumulative[2] - cumulative[1]) / 1.02**3)
    np.testing.assert_allclose(value, by_hand, rtol=1e-12)
    assert (value > 0).all()
    with pytest.raises(ConfigError, match="horizon_months"):
        csmetrics.predictive_clv(summary, bg, gg, horizon_months=2.5)
    with pytest.raises(ConfigError, match="margin"):
        csmetrics.predictive_clv(summary, bg, gg, margin=0)


# --------------------------------------------------------------------------
# sBG: Fader & Hardie (2007, 2010)
# --------------------------------------------------------------------------
@pytest.mark.parametrize("cohort,alpha,beta", [("regular_alive", 0.704, 1.182), ("highend_alive", 0.668, 3.806)])
def test_sbg_on_the_published_cohorts(shared_data, cohort, alpha, beta):
    survivors = pd.read_csv(shared_data / "sbg_retention_cohorts.csv")[cohort].iloc[:8]  # years 0-7
    model = ShiftedBetaGeometric().fit(survivors.tolist())
    assert model.alpha_ == pytest.approx(alpha, abs=0.0015)
    assert model.beta_ == pytest.approx(beta, abs=0.0015)
    # projected survivors of years 8-12 (README_clv.md, derived from the fit)
    projected = 1000 * model.survival(np.arange(8, 13))
    expected = {"regular_alive": [220.1, 204.4, 191.2, 179.9, 170.0], "highend_alive": [460.4, 435.8, 414.2, 395.1, 378.0]}
    np.testing.assert_allclose(projected, expected[cohort], atol=0.06)


def test_sbg_curves_and_derl_by_hand():
    model = ShiftedBetaGeometric()
    model.alpha_, model.beta_ = 3.80, 15.20
    # Fader & Hardie (2010), Table 3, case 1: DERL at 10% for 0-4 renewals
    np.testing.assert_allclose(model.derl([0, 1, 2, 3, 4], 0.10), [3.31, 3.45, 3.59, 3.72, 3.84], atol=0.005)
    # retention: (beta + t - 1) / (alpha + beta + t - 1): 15.2 / 19 = 0.8, then 16.2 / 20 = 0.81
    np.testing.assert_allclose(model.retention([1, 2]), [0.8, 0.81])
    np.testing.assert_allclose(model.survival([0, 1, 2]), [1.0, 0.8, 0.8 * 0.81])
    # with d = 0 the residual lifetime is B(a - 1, b + n + 1) / B(a, b + n): (b + n) / (a - 1) for n = 0 -> 15.2 / 2.8
    assert model.expected_residual_lifetime(0) == pytest.approx(15.2 / 2.8)
    assert model.derl(0, 1e-9) == pytest.approx(15.2 / 2.8, rel=1e-5)
    case2 = ShiftedBetaGeometric()
    case2.alpha_, case2.beta_ = 1 / 15, 4 / 15
    np.testing.assert_allclose(case2.derl([0, 1, 2, 3, 4], 0.10), [7.68, 9.46, 9.86, 10.06, 10.19], atol=0.005)
    assert case2.expected_residual_lifetime(3) == np.inf  # alpha <= 1: heavy tail


def test_models_refuse_what_they_cannot_do():
    with pytest.raises(NotFittedError):
        ShiftedBetaGeometric().survival(1)
    with pytest.raises(NotFittedError):
        BetaGeoModel().probability_alive(pd.DataFrame({"frequency": [1], "recency": [1.0], "T": [2.0]}))
    with pytest.raises(NotFittedError):
        GammaGammaModel().expected_spend(pd.DataFrame({"frequency": [1], "monetary_value": [1.0]}))
    with pytest.raises(ModelFitError, match="no customer churned"):
        ShiftedBetaGeometric().fit([100, 100, 100])
    with pytest.raises(ConfigError, match="must not increase"):
        ShiftedBetaGeometric().fit([100, 80, 90])
    with pytest.raises(ConfigError, match="finite"):
        ShiftedBetaGeometric().fit([100, float("nan")])
    with pytest.raises(ModelFitError, match="repeat purchase"):
        BetaGeoModel().fit(pd.DataFrame({"frequency": [0, 0], "recency": [0.0, 0.0], "T": [5.0, 3.0]}))
    with pytest.raises(ConfigError, match="recency must not exceed T"):
        BetaGeoModel().fit(pd.DataFrame({"frequency": [1], "recency": [5.0], "T": [3.0]}))
    with pytest.raises(ConfigError, match="missing column"):
        BetaGeoModel().fit(pd.DataFrame({"frequency": [1], "recency": [1.0]}))
    with pytest.raises(ModelFitError, match="at least 2"):
        GammaGammaModel().fit(pd.DataFrame({"frequency": [0, 3], "monetary_value": [0.0, 5.0]}))
    with pytest.raises(ConfigError, match="discount_rate"):
        model = ShiftedBetaGeometric()
        model.alpha_, model.beta_ = 1.0, 2.0
        model.derl(0, -0.1)


# --------------------------------------------------------------------------
# cohort_retention_model: survivors from billing, per cohort, pooled, per segment
# --------------------------------------------------------------------------
def monthly_cohort(start: str, lifetimes: list[int], prefix: str, plan: str = "basic") -> list[dict]:
    """One customer per lifetime (months of MRR from ``start``; 99 = still active)."""
    rows = []
    begin = pd.Timestamp(start)
    for i, months in enumerate(lifetimes):
        rows.append(
            {"customer_id": f"{prefix}{i}", "kind": "recurring", "amount": 10.0 * months, "service_start": begin,
             "service_end": begin + pd.DateOffset(months=months), "plan": plan}
        )  # fmt: skip
    return rows


def test_survivors_from_billing_by_hand_and_fits_per_cohort_and_pooled():
    # January cohort: 10 customers, lifetimes 1,1,1,1,2,2,3,99x3 -> survivors at Jan..May ends: 10, 6, 4, 3, 3
    # February cohort: 5 customers, lifetimes 1,2,99x3 -> 5, 4, 3, 3 (Feb..May); June holds as_of: left out
    rows = monthly_cohort("2024-01-01", [1, 1, 1, 1, 2, 2, 3, 99, 99, 99], "j") + monthly_cohort(
        "2024-02-01", [1, 2, 99, 99, 99], "f", plan="pro"
    )
    billing = pd.DataFrame(rows)
    per_cohort = csmetrics.cohort_retention_model(billing, as_of="2024-06-15")
    assert per_cohort["survivors"].tolist() == [[10, 6, 4, 3, 3], [5, 4, 3, 3]]
    assert per_cohort["cohort_customers"].tolist() == [10, 5] and per_cohort["periods"].tolist() == [4, 3]
    for record, survivors in zip(per_cohort.itertuples(), ([10, 6, 4, 3, 3], [5, 4, 3, 3])):
        direct = ShiftedBetaGeometric().fit(survivors)
        assert (record.alpha, record.beta) == pytest.approx((direct.alpha_, direct.beta_), rel=1e-9)
    pooled = csmetrics.cohort_retention_model(billing, as_of="2024-06-15", pooled=True)
    direct = ShiftedBetaGeometric().fit([[10, 6, 4, 3, 3], [5, 4, 3, 3]])
    assert len(pooled) == 1 and pooled["cohort"].isna().all()
    assert (pooled["alpha"].iloc[0], pooled["beta"].iloc[0]) == pytest.approx((direct.alpha_, direct.beta_), rel=1e-9)
    assert pooled["log_likelihood"].iloc[0] == pytest.approx(
        ShiftedBetaGeometric.log_likelihood(direct.alpha_, direct.beta_, [10, 6, 4, 3, 3])
        + ShiftedBetaGeometric.log_likelihood(direct.alpha_, direct.beta_, [5, 4, 3, 3])
    )
    by_plan = csmetrics.cohort_retention_model(billing, as_of="2024-06-15", pooled=True, by="plan")
    assert by_plan["plan"].tolist() == ["basic", "pro"] and by_plan["cohort_customers"].tolist() == [10, 5]


def test_reactivation_starts_nothing_and_unfittable_cohorts_say_why():
    rows = monthly_cohort("2024-01-01", [1, 99, 99], "a")
    # a0 comes back in March: still lost from February on
    rows.append({"customer_id": "a0", "kind": "recurring", "amount": 40.0, "service_start": pd.Timestamp("2024-03-01"),
                 "service_end": pd.Timestamp("2024-07-01"), "plan": "basic"})  # fmt: skip
    rows += monthly_cohort("2024-05-01", [99, 99], "m")  # May: offsets 0 only (June holds as_of)
    frame = csmetrics.cohort_retention_model(pd.DataFrame(rows), as_of="2024-06-15")
    assert frame["survivors"].tolist() == [[3, 2, 2, 2, 2], [2]]
    assert frame["error"].iloc[1] == "no complete period after the cohort's first"
    assert np.isnan(frame["alpha"].iloc[1])
    with pytest.raises(ConfigError, match="pooled must be true or false"):
        csmetrics.cohort_retention_model(pd.DataFrame(rows), pooled="yes")


def test_report_writes_clv_when_the_data_support_a_fit(shared_data, tmp_path):
    billing = cdnow_billing(shared_data)
    calibration = billing[billing["invoiced_at"] < "1997-10-01"]
    result = csmetrics.report({"billing": calibration}, as_of="1997-09-30", html=False)
    fit = result.manifest["clv"]
    assert fit["fitted"] and fit["unit"] == "W"
    assert fit["parameters"]["r"] == pytest.approx(0.243, abs=0.0015)
    assert fit["parameters"]["gamma"] == pytest.approx(15.44, abs=0.01)
    clv = result.clv
    assert len(clv) == 2357 and clv["probability_alive"].between(0, 1).all()
    assert (clv["predictive_clv"] > 0).all()
    out = result.write(tmp_path / "out")
    assert len(pd.read_parquet(out / "clv.parquet")) == 2357
    # subscriptions only: nothing to fit, no clv.parquet, and the manifest says why
    subscriptions = pd.DataFrame({"customer_id": [1], "kind": "recurring", "amount": [10.0],
                                  "service_start": ["2024-01-01"], "service_end": ["2024-02-01"]})  # fmt: skip
    result = csmetrics.report({"billing": subscriptions}, html=False)
    assert result.clv is None and not result.manifest["clv"]["fitted"]
    assert "no customers" in result.manifest["clv"]["reason"]
    assert "clv.parquet" not in result.manifest.get("files", []) and "clv" not in result.outputs()



def test_gamma_gamma_without_spend_heterogeneity_fits_on_the_ridge(sample_tables):
    """sample_data's repeat buyers show no heterogeneity in spend: the likelihood rises toward
    q, gamma -> infinity and is flat there (scipy 1.17's unbounded L-BFGS-B ran off to q = 1e33 and
    the fit was refused). With log q bounded the fit ends on that ridge, and each customer's expected
    spend is the limit without heterogeneity, the purchase-weighted mean sum(x m) / sum(x)."""
    from csmetrics.report import report

    clv = report(sample_tables, html=False).clv
    assert clv is not None
    model = GammaGammaModel().fit(clv)
    assert 100 < model.q_ <= np.exp(20) * (1 + 1e-9)
    repeat = clv[(clv["frequency"] > 0) & (clv["monetary_value"] > 0)]
    limit = float((repeat["frequency"] * repeat["monetary_value"]).sum() / repeat["frequency"].sum())
    np.testing.assert_allclose(model.expected_spend(clv), limit, rtol=0.005)
    np.testing.assert_allclose(clv["expected_spend"], limit, rtol=0.005)
