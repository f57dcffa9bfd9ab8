"""A deterministic generator of one SaaS company's seven tables, at any size.

``sample_data/`` was made by ``python -m csmetrics.datagen --customers 500
--months 24 --out sample_data``; the benchmarks call :func:`generate` with a
million customers. Everything is vectorized over customers: the only Python
loop runs over months (a customer's subscription state moves one month at a
time), so a million customers over 36 months takes well under a minute.

The company: three plans (basic 49, pro 199, enterprise 999 a month; annual
contracts at ten months' price), monthly and annual billing, renewals on each
customer's anniversary day, upgrades and downgrades at renewal, churn,
reactivation, introductory discounts (negative recurring lines), one-time
purchases and refunds, USD and EUR customers with monthly fx rates, tickets on
four channels, NPS/CSAT/CES/CXI surveys with comments and unanswered sends,
product events with and without session ids, and costs by category.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "CHANNELS",
    "COMMENTS",
    "COST_CATEGORIES",
    "EVENT_NAMES",
    "INDUSTRIES",
    "PLANS",
    "PLAN_PRICE",
    "PRIORITIES",
    "REGIONS",
    "generate",
    "main",
    "write",
]

PLANS = np.array(["basic", "pro", "enterprise"])
PLAN_PRICE = np.array([49.0, 199.0, 999.0])
REGIONS = np.array(["NA", "EMEA", "APAC", "LATAM"])
INDUSTRIES = np.array(["software", "retail", "finance", "health", "education"])
CHANNELS = np.array(["email", "chat", "phone", "web"])
PRIORITIES = np.array(["low", "normal", "high", "urgent"])
EVENT_NAMES = np.array(
    ["login", "view_dashboard", "run_report", "export", "invite_user", "api_call", "configure_alert"]
)
COMMENTS = np.array(
    [
        "great support, thanks",
        "too slow to load",
        "missing export to excel",
        "love the dashboards",
        "pricing is confusing",
        "the agent solved it quickly",
        "had to explain my issue twice",
        "onboarding was smooth",
        "billing error again",
        "",
    ]
)
COST_CATEGORIES = np.array(
    ["customer_success", "support", "retention_marketing", "training", "sales", "marketing", "capex"]
)


def generate(
    n_customers: int = 500,
    months: int = 24,
    *,
    start: str = "2023-01-01",
    seed: int = 7,
    tickets_per_active_month: float = 0.45,
    events_per_active_month: float = 14.0,
    nps_send_rate: float = 0.12,
    only: tuple[str, ...] | None = None,
) -> dict[str, pd.DataFrame]:
    """Generate the seven tables (events, tickets, surveys, billing, customers, costs, fx).

    ``only`` names the tables wanted (the others are not made, which saves time
    at scale); surveys need tickets and are made with them.
    """
    wanted = set(only) if only is not None else {"events", "tickets", "surveys", "billing", "customers", "costs", "fx"}
    rng = np.random.default_rng(seed)
    month0 = np.datetime64(start, "M")
    month_starts = (month0 + np.arange(months + 13)).astype("M8[D]")

    customers, signup_month, anniversary, annual, currency = _customers(rng, n_customers, months, month_starts)
    billing, active_month, active_customer = _billing(
        rng, n_customers, months, month_starts, signup_month, anniversary, annual, currency, customers
    )
    tables = {"billing": billing, "customers": customers}
    if wanted & {"tickets", "surveys"}:
        tables["tickets"] = _tickets(rng, active_customer, active_month, month_starts, tickets_per_active_month)
    if "surveys" in wanted:
        tables["surveys"] = _surveys(rng, tables["tickets"], active_customer, active_month, month_starts, nps_send_rate)
    if "events" in wanted:
        tables["events"] = _events(rng, active_customer, active_month, month_starts, events_per_active_month)
    tables["costs"] = _costs(rng, months, month_starts, n_customers)
    tables["fx"] = _fx(rng, months, month_starts)
    order = ("events", "tickets", "surveys", "billing", "customers", "costs", "fx")
    return {name: tables[name] for name in order if name in wanted}


def _utc(values: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(values.astype("M8[s]").astype("M8[ns]")).tz_localize("UTC")


def _customers(rng, n, months, month_starts):
    # a third of the customers were there before the window opened (signup month 0)
    signup_month = np.where(rng.random(n) < 0.3, 0, rng.integers(0, months, n))
    anniversary = rng.integers(0, 28, n)  # day offset of the billing anniversary
    annual = rng.random(n) < 0.2
    currency = np.where(rng.random(n) < 0.2, "EUR", "USD")
    signup_at = month_starts[signup_month] + anniversary.astype("m8[D]")
    signup_seconds = rng.integers(0, 86_400, n).astype("m8[s]")
    customers = pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1, dtype=np.int64),
            "signup_at": _utc(signup_at.astype("M8[s]") + signup_seconds),
            "region": pd.Series(REGIONS[rng.choice(4, n, p=[0.45, 0.3, 0.15, 0.1])], dtype="str"),
            "industry": pd.Series(INDUSTRIES[rng.integers(0, 5, n)], dtype="str"),
            "size": pd.Series(np.array(["smb", "mid", "enterprise"])[rng.choice(3, n, p=[0.6, 0.3, 0.1])], dtype="str"),
        }
    )
    return customers, signup_month, anniversary, annual, currency


def _billing(rng, n, months, month_starts, signup_month, anniversary, annual, currency, customers):
    """Month by month: each active customer renews (possibly on another plan) or churns."""
    plan = rng.choice(3, n, p=[0.55, 0.35, 0.10])
    active = np.zeros(n, dtype=bool)
    ever = np.zeros(n, dtype=bool)
    next_renewal = np.full(n, -1)  # month index of the next renewal for active customers
    discount = rng.random(n) < 0.1
    lines = []  # (customer, start_month, n_months, amount, plan, kind)
    active_month, active_customer = [], []
    for m in range(months):
        signing = signup_month == m
        reactivating = ~active & ever & (rng.random(n) < 0.04)
        plan = np.where(reactivating, rng.choice(3, n, p=[0.5, 0.4, 0.1]), plan)
        starting = signing | reactivating
        active |= starting
        ever |= signing
        next_renewal = np.where(starting, m, next_renewal)

        due = active & (next_renewal == m)
        churn_p = np.where(annual, 0.15, 0.03)
        churning = due & ~starting & (rng.random(n) < churn_p)
        active &= ~churning
        renewing = due & ~churning
        move = rng.random(n)
        upgrade = renewing & ~starting & (move < 0.03) & (plan < 2)
        downgrade = renewing & ~starting & (move > 0.985) & (plan > 0)
        plan = plan + upgrade - downgrade
        span = np.where(annual, 12, 1)
        who = np.flatnonzero(renewing)
        price = PLAN_PRICE[plan[who]] * np.where(annual[who], 10.0, 1.0)
        lines.append((who, np.full(len(who), m), span[who], price, plan[who], np.zeros(len(who), dtype=np.int8)))
        intro = np.flatnonzero(signing & discount & ~annual)
        lines.append(
            (
                intro,
                np.full(len(intro), m),
                np.full(len(intro), 3),
                -0.2 * PLAN_PRICE[plan[intro]] * 3,
                plan[intro],
                np.zeros(len(intro), dtype=np.int8),
            )
        )
        next_renewal = np.where(renewing, m + span, next_renewal)
        live = np.flatnonzero(active)
        active_customer.append(live)
        active_month.append(np.full(len(live), m))

    who, start_m, span, amount, plan_idx, _ = (np.concatenate(parts) for parts in zip(*lines))
    offset = anniversary[who].astype("m8[D]")
    service_start = month_starts[start_m] + offset
    service_end = month_starts[start_m + span] + offset
    recurring = pd.DataFrame(
        {
            "customer_id": who + 1,
            "kind": "recurring",
            "amount": np.round(amount, 2),
            "service_start": _utc(service_start),
            "service_end": _utc(service_end),
            "invoiced_at": _utc(service_start),
            "currency": currency[who],
            "plan": PLANS[plan_idx],
        }
    )
    active_customer = np.concatenate(active_customer)
    active_month = np.concatenate(active_month)

    # one-time purchases (onboarding, extra seats) and a few refunds of them
    n_buys = rng.poisson(0.06, len(active_customer))
    buyer = np.repeat(active_customer, n_buys)
    buy_month = np.repeat(active_month, n_buys)
    buy_at = month_starts[buy_month].astype("M8[s]") + rng.integers(0, 28 * 86_400, len(buyer)).astype("m8[s]")
    buy_amount = np.round(rng.choice([50.0, 120.0, 250.0, 500.0], len(buyer)), 2)
    one_time = pd.DataFrame(
        {
            "customer_id": buyer + 1,
            "kind": "one_time",
            "amount": buy_amount,
            "service_start": pd.NaT,
            "service_end": pd.NaT,
            "invoiced_at": _utc(buy_at),
            "currency": currency[buyer],
            "plan": None,
        }
    )
    refunded = np.flatnonzero(rng.random(len(buyer)) < 0.05)
    # refunded a few days later, inside the same month (the data ends with the window)
    refund_at = np.minimum(
        buy_at[refunded] + np.timedelta64(3, "D"),
        month_starts[buy_month[refunded] + 1].astype("M8[s]") - np.timedelta64(1, "s"),
    )
    refunds = one_time.iloc[refunded].assign(
        kind="refund",
        amount=-one_time["amount"].to_numpy()[refunded],
        invoiced_at=_utc(refund_at),
    )
    billing = pd.concat([recurring, one_time, refunds], ignore_index=True)
    billing["service_start"] = billing["service_start"].astype("datetime64[ns, UTC]")
    billing["service_end"] = billing["service_end"].astype("datetime64[ns, UTC]")
    billing = billing.sort_values(["invoiced_at", "customer_id"], kind="stable").reset_index(drop=True)
    billing.insert(0, "line_id", np.arange(1, len(billing) + 1, dtype=np.int64))
    for column in ("kind", "currency", "plan"):
        billing[column] = billing[column].astype("str")
    billing.loc[billing["plan"] == "None", "plan"] = None
    return billing, active_month, active_customer


def _tickets(rng, active_customer, active_month, month_starts, rate):
    counts = rng.poisson(rate, len(active_customer))
    customer = np.repeat(active_customer, counts)
    month = np.repeat(active_month, counts)
    n = len(customer)
    created = month_starts[month].astype("M8[s]") + rng.integers(0, 28 * 86_400, n).astype("m8[s]")
    channel = rng.choice(4, n, p=[0.4, 0.3, 0.15, 0.15])
    priority = rng.choice(4, n, p=[0.3, 0.45, 0.2, 0.05])
    live = channel == 1
    live |= channel == 2
    abandoned = live & (rng.random(n) < 0.06)
    response_minutes = rng.lognormal(np.where(live, 1.0, 4.5), 0.9)
    responded = ~abandoned & (rng.random(n) < 0.97)
    resolution_hours = response_minutes / 60 + rng.lognormal(np.where(live, 0.0, 2.5), 1.1)
    resolved = ~abandoned & responded & (rng.random(n) < 0.93)
    contacts = 1 + rng.geometric(0.65, n) - 1
    reopens = (rng.random(n) < 0.07).astype(float)
    handle = np.round(rng.lognormal(np.where(live, 6.0, 5.3), 0.6))
    wait = np.where(live, np.round(rng.lognormal(4.0, 0.8)), 0.0)
    frame = pd.DataFrame(
        {
            "ticket_id": np.arange(1, n + 1, dtype=np.int64),
            "customer_id": customer + 1,
            "created_at": _utc(created),
            "channel": pd.Series(CHANNELS[channel], dtype="str"),
            "priority": pd.Series(PRIORITIES[priority], dtype="str"),
            "agent_id": rng.integers(1, 41, n),
            "first_response_at": _utc(created + (response_minutes * 60).astype("m8[s]")),
            "resolved_at": _utc(created + (resolution_hours * 3600).astype("m8[s]")),
            "contacts": np.where(abandoned, 1.0, contacts.astype(float)),
            "handle_seconds": np.where(abandoned, np.nan, handle),
            "wait_seconds": wait,
            "abandoned": abandoned,
            "reopens": np.where(resolved, reopens, 0.0),
        }
    )
    frame.loc[~responded, "first_response_at"] = pd.NaT
    frame.loc[~resolved, "resolved_at"] = pd.NaT
    return (
        frame.sort_values("created_at", kind="stable")
        .reset_index(drop=True)
        .assign(ticket_id=lambda f: np.arange(1, len(f) + 1, dtype=np.int64))
    )


def _answers(rng, n, probabilities):
    return rng.choice(len(probabilities), n, p=probabilities).astype(float)


def _surveys(rng, tickets, active_customer, active_month, month_starts, nps_send_rate):
    parts = []
    # relationship NPS, sent to a sample of active customers each month
    sent = rng.random(len(active_customer)) < nps_send_rate
    who, month = active_customer[sent] + 1, active_month[sent]
    sent_at = month_starts[month].astype("M8[s]") + rng.integers(0, 28 * 86_400, len(who)).astype("m8[s]")
    nps_probs = np.array([2, 1, 1, 2, 2, 4, 6, 10, 16, 26, 30], dtype=float)
    parts.append(("nps", who, sent_at, _answers(rng, len(who), nps_probs / nps_probs.sum()), 0.0, 10.0, None, None))
    # CSAT (1-5) and CES (1-7) after resolved tickets
    resolved = tickets[tickets["resolved_at"].notna()]
    for survey, share, probs, low, high in (
        ("csat", 0.3, [0.06, 0.07, 0.12, 0.35, 0.40], 1.0, 5.0),
        ("ces", 0.1, [0.04, 0.05, 0.08, 0.13, 0.2, 0.28, 0.22], 1.0, 7.0),
    ):
        pick = resolved[rng.random(len(resolved)) < share]
        sent_at = pick["resolved_at"].dt.tz_convert(None).to_numpy().astype("M8[s]") + np.timedelta64(3600, "s")
        answers = _answers(rng, len(pick), np.array(probs)) + low
        parts.append(
            (survey, pick["customer_id"].to_numpy(), sent_at, answers, low, high, pick["ticket_id"].to_numpy(), None)
        )
    # CX index: four component questions per respondent (1-5)
    cx = rng.random(len(active_customer)) < 0.03
    cx_who = np.repeat(active_customer[cx] + 1, 4)
    cx_sent = np.repeat(
        month_starts[active_month[cx]].astype("M8[s]") + rng.integers(0, 28 * 86_400, cx.sum()).astype("m8[s]"), 4
    )
    components = np.tile(np.array(["effort", "empathy", "understanding", "efficiency"]), cx.sum())
    cx_answers = _answers(rng, len(cx_who), np.array([0.05, 0.1, 0.25, 0.35, 0.25])) + 1.0
    parts.append(("cxi", cx_who, cx_sent, cx_answers, 1.0, 5.0, None, components))

    frames = []
    for survey, who, sent_at, answers, low, high, ticket_id, component in parts:
        n = len(who)
        answered = rng.random(n) < (0.7 if survey == "cxi" else 0.35 if survey == "nps" else 0.5)
        delay = rng.exponential(20 * 3600, n).astype("m8[s]")
        comment = np.where(rng.random(n) < 0.35, COMMENTS[rng.integers(0, len(COMMENTS), n)], None)
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": who,
                    "survey": survey,
                    "score": np.where(answered, answers, np.nan),
                    "sent_at": _utc(sent_at),
                    "responded_at": _utc(sent_at + delay),
                    "scale_min": low,
                    "scale_max": high,
                    "component": component,
                    "touchpoint": "relationship" if survey in ("nps", "cxi") else "support",
                    "ticket_id": ticket_id if ticket_id is not None else np.full(n, np.nan),
                    "comment": np.where(answered, comment, None),
                    "_answered": answered,
                }
            )
        )
    surveys = pd.concat(frames, ignore_index=True)
    surveys.loc[~surveys.pop("_answered").to_numpy(), "responded_at"] = pd.NaT
    surveys["ticket_id"] = surveys["ticket_id"].astype("Int64")
    for column in ("survey", "component", "touchpoint", "comment"):
        surveys[column] = surveys[column].astype("str")
        surveys.loc[surveys[column] == "None", column] = None
    surveys = surveys.sort_values("sent_at", kind="stable").reset_index(drop=True)
    surveys.insert(0, "response_id", np.arange(1, len(surveys) + 1, dtype=np.int64))
    return surveys


def _events(rng, active_customer, active_month, month_starts, per_month):
    """Sessions of 1-12 events a few minutes apart, by a customer's 1-8 users."""
    sessions_per_cell = rng.poisson(per_month / 4.0, len(active_customer))
    cell = np.repeat(np.arange(len(active_customer)), sessions_per_cell)
    customer = active_customer[cell]
    n_sessions = len(cell)
    users = 1 + (customer % 8)
    user = (customer + 1) * 100 + rng.integers(0, 1 << 30, n_sessions) % users
    session_start = month_starts[active_month[cell]].astype("M8[s]") + rng.integers(0, 28 * 86_400, n_sessions).astype(
        "m8[s]"
    )
    length = rng.integers(1, 13, n_sessions)
    session = np.repeat(np.arange(n_sessions), length)
    n = len(session)
    gap = rng.exponential(150.0, n).astype(np.int64)
    first = np.concatenate([[0], np.cumsum(length)[:-1]])
    gap[first] = 0
    within = np.cumsum(gap) - np.repeat(np.cumsum(gap)[first], length)
    timestamp = session_start[session] + within.astype("m8[s]")
    has_session_id = (customer[session] % 2) == 0
    duration = np.where(rng.random(n) < 0.5, rng.integers(5, 300, n).astype(float), np.nan)
    events = pd.DataFrame(
        {
            "customer_id": customer[session] + 1,
            "user_id": user[session],
            "timestamp": _utc(timestamp),
            "event": pd.Series(
                EVENT_NAMES[rng.choice(len(EVENT_NAMES), n, p=[0.3, 0.25, 0.15, 0.08, 0.04, 0.13, 0.05])], dtype="str"
            ),
            "session_id": pd.array(np.where(has_session_id, session + 1, 0), dtype="Int64"),
            "duration_seconds": duration,
        }
    )
    events.loc[~has_session_id, "session_id"] = pd.NA
    return events.sort_values("timestamp", kind="stable").reset_index(drop=True)


def _costs(rng, months, month_starts, n_customers):
    base = np.array([40.0, 35.0, 10.0, 6.0, 60.0, 45.0, 25.0]) * n_customers
    month = np.repeat(np.arange(months), len(COST_CATEGORIES))
    category = np.tile(COST_CATEGORIES, months)
    amount = np.round(np.tile(base, months) * rng.uniform(0.8, 1.2, len(month)), 2)
    return pd.DataFrame(
        {
            "incurred_at": _utc(month_starts[month] + np.timedelta64(14, "D")),
            "category": pd.Series(category, dtype="str"),
            "amount": amount,
        }
    )


def _fx(rng, months, month_starts):
    """EUR in USD (the base currency) on the first of each month, and the month before."""
    dates = month_starts[: months + 13]
    rate = np.round(1.08 + np.cumsum(rng.normal(0, 0.01, len(dates))), 4)
    return pd.DataFrame({"currency": pd.Series(["EUR"] * len(dates), dtype="str"), "date": _utc(dates), "rate": rate})


def write(tables: dict[str, pd.DataFrame], out: Path) -> None:
    """Write each table to ``out/<table>.parquet``."""
    out.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        table.to_parquet(out / f"{name}.parquet", index=False, compression="zstd")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--start", default="2023-01-01")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    write(generate(args.customers, args.months, start=args.start, seed=args.seed), args.out)


if __name__ == "__main__":  # pragma: no cover
    main()
