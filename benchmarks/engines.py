"""The benchmark pipelines written independently in DuckDB SQL, Polars (lazy) and naive pandas.

Each returns one row per (period, segment) with the metrics every engine computes,
named as in csmetrics, so run.py can check that all engines agree. Definitions
follow METRICS.md and docs/METRICS_NOTES.md (as_of = the latest timestamp; nothing
after it counts). Written from the definitions, not from csmetrics' code.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import polars as pl

SUPPORT = ["tickets", "fcr_rate", "aht_seconds", "avg_wait_seconds", "abandonment_rate", "reopen_rate",
           "first_response_minutes_p50", "first_response_minutes_p90", "resolution_hours_p50", "resolution_hours_p90"]  # fmt: skip
SURVEYS = ["nps", "csat", "ces", "response_rate"]
REVENUE = ["new_mrr", "reactivation_mrr", "expansion_mrr", "contraction_mrr", "churned_mrr", "mrr",
           "customers_new", "customers_churned"]  # fmt: skip
ENGAGEMENT = ["active_users", "active_customers", "events_per_active_user", "avg_session_minutes"]


#: the DuckDB table each pipeline reads
DUCK_TABLES = {"tickets": "t", "surveys": "s", "billing": "b", "fx": "fx", "events": "ev"}


#: DuckDB's threads in the benchmarks (the machine's two cores)
DUCK_THREADS = 2


def duck(threads: int = DUCK_THREADS) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}; SET TimeZone = 'UTC'")
    return con


def duck_load(con, table: str, source) -> None:
    """Load a table into DuckDB's own storage from a Parquet path or a DataFrame."""
    name = DUCK_TABLES[table]
    if isinstance(source, pd.DataFrame):
        con.register("_source", source)
        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _source")
        con.unregister("_source")
    else:
        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM read_parquet('{source}')")
    # nanosecond timestamps load as TIMESTAMP(TZ)_NS, which date functions do not take: microseconds suffice
    for column, kind in con.execute(f"SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '{name}'").fetchall():
        if kind.startswith("TIMESTAMP") and kind.endswith("_NS") or kind == "TIMESTAMP_NS":
            con.execute(f'ALTER TABLE {name} ALTER COLUMN "{column}" TYPE TIMESTAMPTZ')


# ---------------------------------------------------------------------------------------------
# support: tickets by month x channel
# ---------------------------------------------------------------------------------------------
def support_duckdb(con) -> pd.DataFrame:
    return con.execute("""
        WITH a AS (SELECT greatest(max(created_at), max(first_response_at), max(resolved_at)) AS as_of FROM t),
        x AS (
            SELECT date_trunc('month', created_at) AS period, channel, contacts, coalesce(reopens, 0) AS reopens,
                   abandoned, handle_seconds, wait_seconds,
                   resolved_at IS NOT NULL AND resolved_at <= a.as_of AS resolved,
                   CASE WHEN first_response_at <= a.as_of THEN epoch(first_response_at - created_at) / 60 END AS fr,
                   CASE WHEN resolved_at <= a.as_of THEN epoch(resolved_at - created_at) / 3600 END AS res
            FROM t, a)
        SELECT period, channel, count(*)::DOUBLE AS tickets,
               avg((resolved AND contacts = 1 AND reopens = 0)::INT) AS fcr_rate,
               avg(handle_seconds) FILTER (WHERE NOT abandoned) AS aht_seconds,
               avg(wait_seconds) FILTER (WHERE NOT abandoned) AS avg_wait_seconds,
               avg(abandoned::INT) AS abandonment_rate,
               avg((reopens > 0)::INT) FILTER (WHERE resolved) AS reopen_rate,
               quantile_cont(fr, 0.5) AS first_response_minutes_p50, quantile_cont(fr, 0.9) AS first_response_minutes_p90,
               quantile_cont(res, 0.5) AS resolution_hours_p50, quantile_cont(res, 0.9) AS resolution_hours_p90
        FROM x GROUP BY ALL ORDER BY ALL
    """).df()


def support_polars(tickets: pl.DataFrame) -> pd.DataFrame:
    t = tickets.lazy()
    as_of = t.select(pl.max_horizontal(pl.col("created_at").max(), pl.col("first_response_at").max(), pl.col("resolved_at").max()))
    x = t.join(as_of.select(pl.all().alias("as_of")), how="cross").with_columns(
        period=pl.col("created_at").dt.truncate("1mo"),
        resolved=pl.col("resolved_at").is_not_null() & (pl.col("resolved_at") <= pl.col("as_of")),
        reopens=pl.col("reopens").fill_null(0),
        fr=pl.when(pl.col("first_response_at") <= pl.col("as_of")).then((pl.col("first_response_at") - pl.col("created_at")).dt.total_seconds(fractional=True) / 60),
        res=pl.when(pl.col("resolved_at") <= pl.col("as_of")).then((pl.col("resolved_at") - pl.col("created_at")).dt.total_seconds(fractional=True) / 3600),
    )
    live = ~pl.col("abandoned")
    out = x.group_by("period", "channel").agg(
        tickets=pl.len().cast(pl.Float64),
        fcr_rate=(pl.col("resolved") & (pl.col("contacts") == 1) & (pl.col("reopens") == 0)).mean(),
        aht_seconds=pl.col("handle_seconds").filter(live).mean(),
        avg_wait_seconds=pl.col("wait_seconds").filter(live).mean(),
        abandonment_rate=pl.col("abandoned").mean(),
        reopen_rate=(pl.col("reopens") > 0).filter(pl.col("resolved")).mean(),
        first_response_minutes_p50=pl.col("fr").quantile(0.5, interpolation="linear"),
        first_response_minutes_p90=pl.col("fr").quantile(0.9, interpolation="linear"),
        resolution_hours_p50=pl.col("res").quantile(0.5, interpolation="linear"),
        resolution_hours_p90=pl.col("res").quantile(0.9, interpolation="linear"),
    ).sort("period", "channel")
    return out.collect().to_pandas()


def support_naive(tickets: pd.DataFrame) -> pd.DataFrame:
    as_of = max(tickets["created_at"].max(), tickets["first_response_at"].max(), tickets["resolved_at"].max())

    def one(g: pd.DataFrame) -> pd.Series:
        resolved = g["resolved_at"].notna() & (g["resolved_at"] <= as_of)
        reopens = g["reopens"].fillna(0)
        live = ~g["abandoned"]
        fr = ((g["first_response_at"] - g["created_at"]).dt.total_seconds() / 60)[g["first_response_at"] <= as_of]
        res = ((g["resolved_at"] - g["created_at"]).dt.total_seconds() / 3600)[resolved]
        return pd.Series({
            "tickets": float(len(g)), "fcr_rate": (resolved & (g["contacts"] == 1) & (reopens == 0)).mean(),
            "aht_seconds": g.loc[live, "handle_seconds"].mean(), "avg_wait_seconds": g.loc[live, "wait_seconds"].mean(),
            "abandonment_rate": g["abandoned"].mean(), "reopen_rate": (reopens[resolved] > 0).mean(),
            "first_response_minutes_p50": fr.quantile(0.5), "first_response_minutes_p90": fr.quantile(0.9),
            "resolution_hours_p50": res.quantile(0.5), "resolution_hours_p90": res.quantile(0.9),
        })  # fmt: skip

    period = tickets["created_at"].dt.tz_localize(None).dt.to_period("M").dt.start_time.dt.tz_localize("UTC")
    return tickets.groupby([period.rename("period"), "channel"]).apply(one, include_groups=False).reset_index()


# ---------------------------------------------------------------------------------------------
# surveys: NPS, CSAT, CES by month x touchpoint; response rate by send month
# ---------------------------------------------------------------------------------------------
def surveys_duckdb(con) -> pd.DataFrame:
    return con.execute("""
        WITH a AS (SELECT greatest(max(responded_at), max(sent_at)) AS as_of FROM s),
        ans AS (SELECT date_trunc('month', coalesce(responded_at, sent_at)) AS period, touchpoint, survey, score
                FROM s, a WHERE score IS NOT NULL AND coalesce(responded_at, sent_at) <= a.as_of),
        m AS (SELECT period, touchpoint,
                100 * (count(*) FILTER (WHERE survey = 'nps' AND score >= 9) - count(*) FILTER (WHERE survey = 'nps' AND score <= 6))
                    / nullif(count(*) FILTER (WHERE survey = 'nps'), 0) AS nps,
                (count(*) FILTER (WHERE survey = 'csat' AND score >= 4)) / nullif(count(*) FILTER (WHERE survey = 'csat'), 0) AS csat,
                avg(score) FILTER (WHERE survey = 'ces') AS ces
              FROM ans GROUP BY ALL),
        r AS (SELECT date_trunc('month', sent_at) AS period, touchpoint,
                avg((score IS NOT NULL AND coalesce(responded_at, sent_at) <= a.as_of)::INT) AS response_rate
              FROM s, a WHERE sent_at IS NOT NULL AND sent_at <= a.as_of GROUP BY ALL)
        SELECT coalesce(m.period, r.period) AS period, coalesce(m.touchpoint, r.touchpoint) AS touchpoint,
               nps::DOUBLE AS nps, csat::DOUBLE AS csat, ces, response_rate
        FROM m FULL JOIN r ON m.period = r.period AND m.touchpoint IS NOT DISTINCT FROM r.touchpoint ORDER BY ALL
    """).df()


def surveys_polars(surveys: pl.DataFrame) -> pd.DataFrame:
    s = surveys.lazy()
    as_of = s.select(pl.max_horizontal(pl.col("responded_at").max(), pl.col("sent_at").max()).alias("as_of"))
    s = s.join(as_of, how="cross").with_columns(at=pl.coalesce("responded_at", "sent_at"))
    answered = pl.col("score").is_not_null() & (pl.col("at") <= pl.col("as_of"))
    nps = pl.col("survey") == "nps"
    m = s.filter(answered).with_columns(period=pl.col("at").dt.truncate("1mo")).group_by("period", "touchpoint").agg(
        nps=(100 * ((nps & (pl.col("score") >= 9)).sum().cast(pl.Int64) - (nps & (pl.col("score") <= 6)).sum().cast(pl.Int64)) / nps.sum()).cast(pl.Float64),
        csat=((pl.col("survey") == "csat") & (pl.col("score") >= 4)).sum() / (pl.col("survey") == "csat").sum(),
        ces=pl.col("score").filter(pl.col("survey") == "ces").mean(),
    )
    r = s.filter(pl.col("sent_at").is_not_null() & (pl.col("sent_at") <= pl.col("as_of"))).with_columns(
        period=pl.col("sent_at").dt.truncate("1mo")).group_by("period", "touchpoint").agg(response_rate=answered.mean())
    out = m.join(r, on=["period", "touchpoint"], how="full", coalesce=True, nulls_equal=True).sort("period", "touchpoint")
    frame = out.collect().to_pandas()
    frame[["nps", "csat"]] = frame[["nps", "csat"]].replace([np.inf, -np.inf], np.nan)
    return frame


def surveys_naive(surveys: pd.DataFrame) -> pd.DataFrame:
    as_of = max(surveys["responded_at"].max(), surveys["sent_at"].max())
    at = surveys["responded_at"].fillna(surveys["sent_at"])

    def one(g: pd.DataFrame) -> pd.Series:
        answered = g["score"].notna() & (g["_at"] <= as_of)
        a = g[answered]
        nps, csat, ces = (a[a["survey"] == k]["score"] for k in ("nps", "csat", "ces"))
        return pd.Series({"nps": 100 * ((nps >= 9).sum() - (nps <= 6).sum()) / len(nps) if len(nps) else np.nan,
                          "csat": (csat >= 4).mean() if len(csat) else np.nan, "ces": ces.mean()})  # fmt: skip

    frame = surveys.assign(_at=at, period=at.dt.tz_localize(None).dt.to_period("M").dt.start_time.dt.tz_localize("UTC"))
    frame = frame[frame["score"].notna() & (frame["_at"] <= as_of)]
    return frame.groupby(["period", "touchpoint"]).apply(one, include_groups=False).reset_index()


# ---------------------------------------------------------------------------------------------
# revenue: monthly MRR movements (event level, same-instant netting, MRR floored at 0)
# ---------------------------------------------------------------------------------------------
def revenue_duckdb(con) -> pd.DataFrame:
    return con.execute("""
        WITH a AS (SELECT greatest(max(service_start), max(invoiced_at)) AS as_of FROM b),
        l AS (
            SELECT b.customer_id, b.service_start AS s, b.service_end AS e,
                   b.amount * coalesce(r.rate, 1.0) AS amount, datediff('month', b.service_start, b.service_end) AS k
            FROM b ASOF LEFT JOIN fx r ON r.currency = b.currency AND b.service_start >= r.date
            WHERE b.kind = 'recurring' AND b.service_start <= (SELECT as_of FROM a)),
        m AS (SELECT customer_id, s, e, round_even(10000 * CASE WHEN k >= 1 AND s + to_months(k::INT) = e THEN amount / k
                     ELSE amount * 30.4375 / (epoch(e - s) / 86400) END, 0)::BIGINT AS step FROM l),
        steps AS (SELECT customer_id, s AS t, step AS d FROM m
                  UNION ALL SELECT customer_id, e, -step FROM m, a WHERE e <= a.as_of),
        net AS (SELECT customer_id, t, sum(d) AS d FROM steps GROUP BY ALL),
        run AS (SELECT customer_id, t, d, sum(d) OVER (PARTITION BY customer_id ORDER BY t) AS after FROM net),
        mv AS (SELECT customer_id, t, greatest(after - d, 0) AS b0, greatest(after, 0) AS a0 FROM run),
        cls AS (SELECT t, b0, a0, coalesce(sum((a0 > 0)::INT) OVER (PARTITION BY customer_id ORDER BY t
                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS seen FROM mv),
        k AS (SELECT date_trunc('month', t) AS period, a0 - b0 AS delta,
                CASE WHEN b0 = 0 AND a0 > 0 AND seen = 0 THEN 'new' WHEN b0 = 0 AND a0 > 0 THEN 'reactivation'
                     WHEN b0 > 0 AND a0 = 0 THEN 'churn' WHEN a0 > b0 THEN 'expansion' WHEN a0 < b0 THEN 'contraction' END AS kind
              FROM cls WHERE a0 <> b0),
        per AS (SELECT period,
                  sum(delta) FILTER (WHERE kind = 'new') / 1e4 AS new_mrr, sum(delta) FILTER (WHERE kind = 'reactivation') / 1e4 AS reactivation_mrr,
                  sum(delta) FILTER (WHERE kind = 'expansion') / 1e4 AS expansion_mrr, -sum(delta) FILTER (WHERE kind = 'contraction') / 1e4 AS contraction_mrr,
                  -sum(delta) FILTER (WHERE kind = 'churn') / 1e4 AS churned_mrr, sum(delta) / 1e4 AS net,
                  count(*) FILTER (WHERE kind = 'new')::DOUBLE AS customers_new, count(*) FILTER (WHERE kind = 'churn')::DOUBLE AS customers_churned
                FROM k GROUP BY ALL)
        SELECT period, coalesce(new_mrr, 0) AS new_mrr, coalesce(reactivation_mrr, 0) AS reactivation_mrr,
               coalesce(expansion_mrr, 0) AS expansion_mrr, coalesce(contraction_mrr, 0) AS contraction_mrr,
               coalesce(churned_mrr, 0) AS churned_mrr, sum(net) OVER (ORDER BY period) AS mrr, customers_new, customers_churned
        FROM per ORDER BY period
    """).df()


def revenue_polars(billing: pl.DataFrame, fx: pl.DataFrame) -> pd.DataFrame:
    b = billing.lazy()
    as_of = b.select(pl.max_horizontal(pl.col("service_start").max(), pl.col("invoiced_at").max()).alias("as_of"))
    rec = b.filter(pl.col("kind") == "recurring").join(as_of, how="cross").filter(pl.col("service_start") <= pl.col("as_of"))
    rec = rec.sort("currency", "service_start").join_asof(
        fx.lazy().sort("currency", "date").rename({"date": "service_start"}), on="service_start", by="currency",
        strategy="backward", check_sortedness=False,
    )
    rec = rec.with_columns(amount=pl.col("amount") * pl.col("rate").fill_null(1.0), s=pl.col("service_start"), e=pl.col("service_end"))
    months = (pl.col("e").dt.year() - pl.col("s").dt.year()) * 12 + pl.col("e").dt.month() - pl.col("s").dt.month()
    exact = (months >= 1) & (pl.col("s").dt.offset_by(months.cast(pl.String) + "mo") == pl.col("e"))
    rec = rec.with_columns(step=(10000 * pl.when(exact).then(pl.col("amount") / months)
                                 .otherwise(pl.col("amount") * 30.4375 / ((pl.col("e") - pl.col("s")).dt.total_seconds(fractional=True) / 86400))).round(0, mode="half_to_even").cast(pl.Int64))  # fmt: skip
    steps = pl.concat([
        rec.select("customer_id", t=pl.col("s"), d=pl.col("step")),
        rec.filter(pl.col("e") <= pl.col("as_of")).select("customer_id", t=pl.col("e"), d=-pl.col("step")),
    ])  # fmt: skip
    net = steps.group_by("customer_id", "t").agg(pl.col("d").sum()).sort("customer_id", "t")
    mv = net.with_columns(after=pl.col("d").cum_sum().over("customer_id")).with_columns(
        b0=pl.max_horizontal(pl.col("after") - pl.col("d"), pl.lit(0)), a0=pl.max_horizontal(pl.col("after"), pl.lit(0)))
    mv = mv.with_columns(seen=(pl.col("a0") > 0).cast(pl.Int64).cum_sum().over("customer_id") - (pl.col("a0") > 0).cast(pl.Int64))
    k = mv.filter(pl.col("a0") != pl.col("b0")).with_columns(
        period=pl.col("t").dt.truncate("1mo"), delta=pl.col("a0") - pl.col("b0"),
        kind=pl.when((pl.col("b0") == 0) & (pl.col("seen") == 0)).then(pl.lit("new"))
        .when(pl.col("b0") == 0).then(pl.lit("reactivation")).when(pl.col("a0") == 0).then(pl.lit("churn"))
        .when(pl.col("a0") > pl.col("b0")).then(pl.lit("expansion")).otherwise(pl.lit("contraction")),
    )  # fmt: skip
    kind = pl.col("kind")
    per = k.group_by("period").agg(
        new_mrr=pl.col("delta").filter(kind == "new").sum() / 1e4,
        reactivation_mrr=pl.col("delta").filter(kind == "reactivation").sum() / 1e4,
        expansion_mrr=pl.col("delta").filter(kind == "expansion").sum() / 1e4,
        contraction_mrr=-pl.col("delta").filter(kind == "contraction").sum() / 1e4,
        churned_mrr=-pl.col("delta").filter(kind == "churn").sum() / 1e4,
        net=pl.col("delta").sum() / 1e4,
        customers_new=(kind == "new").sum().cast(pl.Float64),
        customers_churned=(kind == "churn").sum().cast(pl.Float64),
    ).sort("period").with_columns(mrr=pl.col("net").cum_sum()).drop("net")
    return per.collect(engine="auto").to_pandas()


def revenue_naive(billing: pd.DataFrame, fx: pd.DataFrame) -> pd.DataFrame:
    """A per-customer Python loop over each customer's lines (groupby.apply)."""
    as_of = max(billing["service_start"].max(), billing["invoiced_at"].max())
    rates = fx.sort_values("date")
    rec = billing[(billing["kind"] == "recurring") & (billing["service_start"] <= as_of)].copy()
    rec = pd.merge_asof(rec.sort_values("service_start"), rates.rename(columns={"date": "service_start"}), on="service_start", by="currency")
    rec["amount"] = rec["amount"] * rec["rate"].fillna(1.0)

    def monthly(row) -> int:
        s, e = row.service_start, row.service_end
        k = (e.year - s.year) * 12 + e.month - s.month
        value = row.amount / k if k >= 1 and s + pd.DateOffset(months=k) == e else row.amount * 30.4375 / ((e - s) / pd.Timedelta(days=1))
        return int(round(value * 10000))

    def customer(g: pd.DataFrame) -> pd.DataFrame:
        changes: dict = {}
        for row in g.itertuples():
            step = monthly(row)
            changes[row.service_start] = changes.get(row.service_start, 0) + step
            if row.service_end <= as_of:
                changes[row.service_end] = changes.get(row.service_end, 0) - step
        level, seen, out = 0, False, []
        for t in sorted(changes):
            before, level = max(level, 0), level + changes[t]
            after = max(level, 0)
            if after != before:
                kind = ("new" if not seen else "reactivation") if before == 0 else ("churn" if after == 0 else ("expansion" if after > before else "contraction"))
                out.append((t, kind, after - before))
            seen = seen or after > 0
        return pd.DataFrame(out, columns=["t", "kind", "delta"])

    moves = rec.groupby("customer_id").apply(customer, include_groups=False).reset_index(drop=True)
    moves["period"] = moves["t"].dt.tz_localize(None).dt.to_period("M").dt.start_time.dt.tz_localize("UTC")
    table = moves.pivot_table(index="period", columns="kind", values="delta", aggfunc="sum").fillna(0) / 1e4
    return table.reset_index()


# ---------------------------------------------------------------------------------------------
# engagement: active users and customers, events per user, sessions by month
# ---------------------------------------------------------------------------------------------
def engagement_duckdb(con) -> pd.DataFrame:
    return con.execute("""
        WITH e AS (SELECT customer_id, coalesce(user_id::VARCHAR, 'customer') AS u, timestamp AS t, session_id, duration_seconds,
                          CASE WHEN session_id IS NULL THEN 'u' || customer_id || ':' || coalesce(user_id::VARCHAR, 'customer')
                               ELSE 's' || customer_id || ':' || session_id END AS owner FROM ev),
        g AS (SELECT *, CASE WHEN lag(t) OVER w IS NULL OR (session_id IS NULL AND t - lag(t) OVER w >= INTERVAL 30 MINUTE)
                             THEN 1 ELSE 0 END AS fresh FROM e WINDOW w AS (PARTITION BY owner ORDER BY t)),
        -- ties in t: the session-opening row must come first, or it lands in the previous session
        n0 AS (SELECT *, sum(fresh) OVER (PARTITION BY owner ORDER BY t, fresh DESC ROWS UNBOUNDED PRECEDING) AS sid FROM g),
        n AS (SELECT *, max(t) OVER (PARTITION BY owner, sid) AS last_t FROM n0),
        sess AS (SELECT date_trunc('month', min(t)) AS period,
                        (epoch(max(t) - min(t)) + coalesce(max(duration_seconds) FILTER (WHERE t = last_t), 0)) / 60 AS minutes
                 FROM n GROUP BY owner, sid),
        users AS (SELECT date_trunc('month', t) AS period, count(DISTINCT (customer_id, u)) AS active_users,
                         count(DISTINCT customer_id) AS active_customers, count(*) AS events FROM e GROUP BY ALL),
        s AS (SELECT period, avg(minutes) AS avg_session_minutes FROM sess GROUP BY ALL)
        SELECT users.period, active_users::DOUBLE AS active_users, active_customers::DOUBLE AS active_customers,
               events / active_users AS events_per_active_user, avg_session_minutes
        FROM users JOIN s USING (period) ORDER BY period
    """).df()


def engagement_polars(events: pl.DataFrame) -> pd.DataFrame:
    e = events.lazy().with_columns(
        u=pl.col("user_id").cast(pl.String).fill_null("customer"), t=pl.col("timestamp"),
        owner=pl.when(pl.col("session_id").is_null())
        .then(pl.lit("u") + pl.col("customer_id").cast(pl.String) + ":" + pl.col("user_id").cast(pl.String).fill_null("customer"))
        .otherwise(pl.lit("s") + pl.col("customer_id").cast(pl.String) + ":" + pl.col("session_id").cast(pl.String)),
    ).sort("owner", "t")  # fmt: skip
    gap = pl.col("t").diff().over("owner")
    n = e.with_columns(fresh=(gap.is_null() | (pl.col("session_id").is_null() & (gap >= pl.duration(minutes=30)))).cast(pl.Int64))
    n = n.with_columns(sid=pl.col("fresh").cum_sum().over("owner"))
    sess = n.group_by("owner", "sid").agg(
        start=pl.col("t").min(),
        minutes=((pl.col("t").max() - pl.col("t").min()).dt.total_seconds(fractional=True)
                 + pl.col("duration_seconds").filter(pl.col("t") == pl.col("t").max()).max().fill_null(0)) / 60,
    ).group_by(period=pl.col("start").dt.truncate("1mo")).agg(avg_session_minutes=pl.col("minutes").mean())
    users = e.group_by(period=pl.col("t").dt.truncate("1mo")).agg(
        active_users=pl.struct("customer_id", "u").n_unique().cast(pl.Float64),
        active_customers=pl.col("customer_id").n_unique().cast(pl.Float64), events=pl.len(),
    ).with_columns(events_per_active_user=pl.col("events") / pl.col("active_users")).drop("events")
    return users.join(sess, on="period").sort("period").collect().to_pandas()


def engagement_naive(events: pd.DataFrame) -> pd.DataFrame:
    def sessions(g: pd.DataFrame) -> pd.DataFrame:
        out, start, last, last_duration = [], None, None, None
        g = g.assign(_d=g["duration_seconds"].fillna(-1.0)).sort_values(["timestamp", "_d"], kind="stable")
        for row in g.itertuples():
            if start is None or (pd.isna(row.session_id) and (row.timestamp - last) >= pd.Timedelta(minutes=30)):
                if start is not None:
                    out.append((start, (last - start).total_seconds() / 60 + (0 if pd.isna(last_duration) else last_duration / 60)))
                start = row.timestamp
            last, last_duration = row.timestamp, row.duration_seconds
        out.append((start, (last - start).total_seconds() / 60 + (0 if pd.isna(last_duration) else last_duration / 60)))
        return pd.DataFrame(out, columns=["start", "minutes"])

    owner = np.where(events["session_id"].isna(), "u" + events["customer_id"].astype(str) + ":" + events["user_id"].astype(str),
                     "s" + events["customer_id"].astype(str) + ":" + events["session_id"].astype(str))  # fmt: skip
    table = events.assign(owner=owner).groupby("owner").apply(sessions, include_groups=False).reset_index(drop=True)
    table["period"] = table["start"].dt.tz_localize(None).dt.to_period("M").dt.start_time.dt.tz_localize("UTC")
    return table.groupby("period")["minutes"].mean().rename("avg_session_minutes").reset_index()
