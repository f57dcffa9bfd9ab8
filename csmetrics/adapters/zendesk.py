"""Fivetran's Zendesk Support schema -> tickets, surveys and business-hours schedules (METRICS.md §17).

Mapping (docs/DATA_GUIDE.md, "From Fivetran's Zendesk tables"):

- **tickets** from ``ticket`` (deleted tickets left out): ticket_id = id; customer_id = the
  ticket's organization_id, else its requester_id; created_at; channel = via_channel; priority;
  agent_id = assignee_id; group = group_id (a segment column).
- first_response_at = the first public comment (``ticket_comment``) by a user whose role
  (``user``) is agent or admin, at or after created_at; contacts = the public agent replies up to
  the first solve (null without any).
- resolved_at = the first time ``ticket_field_history`` sets status to solved (or closed, when
  solved was skipped); reopens = the times the status leaves solved for open, pending or hold.
  Without a status history a solved or closed ticket is resolved at updated_at. A status row
  before created_at (ticket 11071 has one) is kept for the lifecycle; resolved_at never precedes
  created_at (it is clipped to it).
- **surveys** from satisfaction ratings (the ticket's ``satisfaction_score`` or the older
  ``satisfaction_rating`` table): good = 1, bad = 0 on a 0-1 scale (CSAT threshold 1), offered =
  sent without an answer.
- **schedules**: one :class:`~csmetrics.Schedule` per ``schedule`` (open intervals in minutes
  since Sunday 00:00 local time), with ``schedule_holiday`` dates (end inclusive), and the same as a
  table (schedules.parquet: schedule_id, name, tz, day, open, close; holidays.parquet).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from csmetrics.adapters.stripe import Converted, is_true, need_table, parse_time, read_source, synced_as_of
from csmetrics.schedule import SCHEDULE_COLUMNS, schedules_from_tables
from csmetrics.validate import validate

__all__ = ["ZENDESK_ZONES", "fivetran_zendesk"]

#: Zendesk's (Rails) time-zone names -> IANA (the common ones; an IANA name passes through).
ZENDESK_ZONES = {
    "Pacific Time (US & Canada)": "America/Los_Angeles",
    "Mountain Time (US & Canada)": "America/Denver",
    "Central Time (US & Canada)": "America/Chicago",
    "Eastern Time (US & Canada)": "America/New_York",
    "London": "Europe/London",
    "Dublin": "Europe/Dublin",
    "Berlin": "Europe/Berlin",
    "Paris": "Europe/Paris",
    "Amsterdam": "Europe/Amsterdam",
    "Madrid": "Europe/Madrid",
    "Sydney": "Australia/Sydney",
    "Tokyo": "Asia/Tokyo",
    "Montevideo": "America/Montevideo",
    "Cairo": "Africa/Cairo",
    "UTC": "UTC",
}
_SOURCE = "fivetran-zendesk"  # the adapter's name in its errors
_AGENTS = ("agent", "admin")
_SUNDAY_FIRST = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def fivetran_zendesk(source: Path | str | Mapping[str, pd.DataFrame]) -> Converted:
    """tickets, surveys and schedules from Fivetran's Zendesk tables (a folder or a mapping)."""
    tables = read_source(source)
    if isinstance(source, (str, Path)) and (Path(source) / "historical").is_dir():
        tables.update({k: v for k, v in read_source(Path(source) / "historical").items() if k not in tables})
    used: dict[str, list[str]] = {}
    notes: list[str] = []
    ticket = need_table(tables, "ticket", ["id", "created_at", "status"], used, _SOURCE)
    ticket = ticket[ticket["status"].astype(str).str.lower() != "deleted"]
    created = parse_time(ticket["created_at"])
    customer = ticket["organization_id"] if "organization_id" in ticket else pd.Series(None, index=ticket.index)
    if "requester_id" in ticket:
        customer = customer.where(customer.notna(), ticket["requester_id"])
    out = pd.DataFrame(
        {
            "ticket_id": ticket["id"].to_numpy(),
            "customer_id": customer.to_numpy(),
            "created_at": created.to_numpy(),
            "channel": ticket["via_channel"].to_numpy() if "via_channel" in ticket else None,
            "priority": ticket["priority"].to_numpy() if "priority" in ticket else None,
            "agent_id": ticket["assignee_id"].to_numpy() if "assignee_id" in ticket else None,
            "group": ticket["group_id"].to_numpy() if "group_id" in ticket else None,
        }
    )
    resolved, reopens = _lifecycle(tables, ticket, used, notes)
    out["resolved_at"] = (
        pd.Series(resolved, dtype="datetime64[ns, UTC]")
        .where(lambda r: r.isna() | (r >= out["created_at"]), out["created_at"])
        .to_numpy()
    )
    out["reopens"] = reopens
    first, contacts = _replies(tables, out, used)
    out["first_response_at"] = first
    out["contacts"] = contacts
    missing_customer = out["customer_id"].isna()
    if missing_customer.any():
        notes.append(f"{int(missing_customer.sum())} ticket(s) with neither organization nor requester were left out")
        out = out[~missing_customer.to_numpy()]
    schedules, table, holidays = _schedules(tables, used, notes)
    if table is not None:
        default = table.loc[table["default"], "schedule_id"]
        out["schedule_id"] = _ticket_schedules(
            tables, out, schedules, default.iloc[0] if len(default) else None, used, notes
        )
    converted = {"tickets": validate(out.reset_index(drop=True), "tickets")}
    if table is not None:
        converted["schedules"] = table
        converted["holidays"] = holidays
    surveys = _ratings(tables, ticket.assign(_customer=customer.to_numpy()), used)
    if surveys is not None and len(surveys):
        converted["surveys"] = validate(surveys, "surveys")
    return Converted(converted, synced_as_of(tables, used), used, notes, schedules, "fivetran-zendesk")


def _lifecycle(tables, ticket: pd.DataFrame, used: dict, notes: list[str]) -> tuple[list, np.ndarray]:
    """Per ticket: the first solve (or close) instant and the number of reopens after a solve."""
    ids = ticket["id"].astype(str).to_numpy()
    resolved: dict[str, pd.Timestamp] = {}
    reopened: dict[str, int] = {}
    if "ticket_field_history" in tables:
        history = need_table(
            tables, "ticket_field_history", ["field_name", "ticket_id", "updated", "value"], used, _SOURCE
        )
        status = history[history["field_name"] == "status"].assign(at=lambda h: parse_time(h["updated"]))
        status = status.sort_values(["ticket_id", "at"], kind="stable")
        for key, rows in status.groupby(status["ticket_id"].astype(str), sort=False):
            values = rows["value"].astype(str).str.lower().to_numpy()
            times = rows["at"].to_numpy()
            done = np.flatnonzero(values == "solved")
            if not len(done):
                done = np.flatnonzero(values == "closed")
            if len(done):
                resolved[key] = pd.Timestamp(times[done[0]])
            reopened[key] = int(
                np.sum((values[:-1] == "solved") & np.isin(values[1:], ["open", "pending", "hold", "on-hold", "new"]))
            )
    updated = parse_time(ticket["updated_at"]) if "updated_at" in ticket else pd.Series(pd.NaT, index=ticket.index)
    finished = ticket["status"].astype(str).str.lower().isin(["solved", "closed"]).to_numpy()
    out = []
    for i, key in enumerate(ids):
        if key in resolved:
            out.append(resolved[key])
        elif finished[i] and pd.notna(updated.iloc[i]):
            out.append(updated.iloc[i])
        else:
            out.append(pd.NaT)
    return out, np.array([reopened.get(key, np.nan) for key in ids], dtype=float)


def _replies(tables, tickets: pd.DataFrame, used: dict) -> tuple[np.ndarray, np.ndarray]:
    n = len(tickets)
    first = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    contacts = np.full(n, np.nan)
    if "ticket_comment" not in tables or "user" not in tables:
        return pd.DatetimeIndex(first).tz_localize("UTC"), contacts
    comment = need_table(tables, "ticket_comment", ["ticket_id", "user_id", "created", "public"], used, _SOURCE)
    user = need_table(tables, "user", ["id", "role"], used, _SOURCE)
    agents = set(user.loc[user["role"].astype(str).str.lower().isin(_AGENTS), "id"].astype(str))
    public = comment[is_true(comment["public"]) & comment["user_id"].astype(str).isin(agents)]
    public = public.assign(at=parse_time(public["created"]))
    position = {str(k): i for i, k in enumerate(tickets["ticket_id"])}
    created = pd.DatetimeIndex(tickets["created_at"])
    resolved = pd.DatetimeIndex(tickets["resolved_at"])
    for key, rows in public.groupby(public["ticket_id"].astype(str)):
        i = position.get(key)
        if i is None:
            continue
        times = rows["at"][rows["at"] >= created[i]].sort_values()
        if len(times):
            first[i] = times.iloc[0].tz_convert(None).to_datetime64()
            until = times if pd.isna(resolved[i]) else times[times <= resolved[i]]
            contacts[i] = float(len(until)) if len(until) else np.nan
    return pd.DatetimeIndex(first).tz_localize("UTC"), contacts


def _ratings(tables, ticket: pd.DataFrame, used: dict) -> pd.DataFrame | None:
    score_of = {"good": 1.0, "bad": 0.0, "offered": np.nan}
    if "satisfaction_score" in ticket:
        rated = ticket[ticket["satisfaction_score"].astype(str).str.lower().isin(list(score_of))]
        frame = pd.DataFrame({"response_id": rated["id"].astype(str) + "-csat", "customer_id": rated["_customer"],
                              "score": rated["satisfaction_score"].str.lower().map(score_of), "sent_at": parse_time(rated["updated_at"]),
                              "ticket_id": rated["id"]})  # fmt: skip
    elif "satisfaction_rating" in tables:
        rating = need_table(
            tables, "satisfaction_rating", ["id", "ticket_id", "requester_id", "score", "created_at"], used, _SOURCE
        )
        known = rating["score"].astype(str).str.lower().isin(list(score_of))
        rating = rating[known].drop_duplicates("id")  # the seed's scores are md5 hashes: none is known
        frame = pd.DataFrame({"response_id": rating["id"], "customer_id": rating["requester_id"],
                              "score": rating["score"].str.lower().map(score_of), "sent_at": parse_time(rating["created_at"]),
                              "ticket_id": rating["ticket_id"]})  # fmt: skip
    else:
        return None
    frame["survey"] = "csat"
    frame["responded_at"] = frame["sent_at"].where(frame["score"].notna())
    frame["scale_min"], frame["scale_max"] = 0.0, 1.0
    return frame.reset_index(drop=True)


def _schedules(tables, used: dict, notes: list[str]):
    """Zendesk's schedules as ``Schedule``s (by id) and as the table DATA_DIR keeps (one row per open
    interval, the default schedule flagged), plus the holidays table."""
    if "schedule" not in tables:
        return {}, None, None
    schedule = need_table(tables, "schedule", ["id", "name", "time_zone", "start_time", "end_time"], used, _SOURCE)
    if "_fivetran_deleted" in schedule:
        schedule = schedule[~is_true(schedule["_fivetran_deleted"])]
    holidays = tables.get("schedule_holiday")
    default = _default_schedule(schedule)
    rows, holiday_rows = [], []
    for key, group in schedule.groupby(schedule["id"].astype(str), sort=True):
        zone = str(group["time_zone"].iloc[0])
        for start, end in zip(pd.to_numeric(group["start_time"]), pd.to_numeric(group["end_time"])):
            for day, a, b in _week_intervals(int(start), int(end)):
                rows.append((key, str(group["name"].iloc[0]), ZENDESK_ZONES.get(zone, zone), day,
                             f"{a // 60:02d}:{a % 60:02d}", f"{b // 60:02d}:{b % 60:02d}", key == default))  # fmt: skip
        if holidays is not None and {"schedule_id", "start_date", "end_date"} <= set(holidays.columns):
            mine = holidays[holidays["schedule_id"].astype(str) == key]
            for start, end in zip(mine["start_date"], mine["end_date"]):
                days = pd.date_range(start, end, freq="D").strftime("%Y-%m-%d").tolist()  # end inclusive
                holiday_rows += [(key, d) for d in days]
            used["schedule_holiday"] = ["schedule_id", "start_date", "end_date"]
    if holidays is not None and len(holidays) and not holiday_rows:
        notes.append("schedule holidays name no known schedule: none applied")
    table = pd.DataFrame(rows, columns=list(SCHEDULE_COLUMNS))
    closed = pd.DataFrame(holiday_rows, columns=["schedule_id", "date"])
    return schedules_from_tables(table, closed)[0], table, closed


def _default_schedule(schedule: pd.DataFrame) -> str | None:
    """The account's default schedule: the one created first (ties and a missing created_at: lowest id)."""
    if not len(schedule):
        return None
    ids = schedule["id"].astype(str)
    created = parse_time(schedule["created_at"]) if "created_at" in schedule else pd.Series(pd.NaT, index=ids.index)
    first = pd.DataFrame({"id": ids, "created": created}).sort_values(["created", "id"], na_position="last")
    return str(first["id"].iloc[0])


def _week_intervals(start: int, end: int) -> list[tuple[str, int, int]]:
    """Zendesk's interval in minutes since Sunday 00:00 (local) as (day, start, end) minutes of each
    day it covers: an interval running past midnight is split at it, the week wraps."""
    out = []
    while end > start:
        day = start // 1440
        stop = min(end, (day + 1) * 1440)
        out.append((_SUNDAY_FIRST[day % 7], start - day * 1440, stop - day * 1440))
        start = stop
    return out


def _ticket_schedules(tables, tickets: pd.DataFrame, known: Mapping[str, Any], default: str | None,
                      used: dict, notes: list[str]) -> np.ndarray:  # fmt: skip
    """Each ticket's schedule id (§11: the schedule in force at the ticket's creation, one for its life):
    the latest ``ticket_schedule`` row at or before created_at, else the ticket's first row; tickets
    without a row, or whose schedule is unknown, take the default schedule."""
    chosen = np.full(len(tickets), default, dtype=object)
    if "ticket_schedule" not in tables or not known:
        return chosen
    rows = need_table(tables, "ticket_schedule", ["ticket_id", "created_at", "schedule_id"], used, _SOURCE)
    rows = pd.DataFrame({"ticket": rows["ticket_id"].astype(str), "at": parse_time(rows["created_at"]),
                         "schedule": rows["schedule_id"].astype(str)}).sort_values(["ticket", "at"], kind="stable")  # fmt: skip
    created = pd.Series(pd.DatetimeIndex(tickets["created_at"]), index=tickets["ticket_id"].astype(str))
    rows = rows[rows["ticket"].isin(created.index)]
    at_creation = rows[rows["at"] <= created.reindex(rows["ticket"]).to_numpy()].groupby("ticket")["schedule"].last()
    first = rows.groupby("ticket")["schedule"].first()
    pick = at_creation.reindex(created.index).fillna(first.reindex(created.index))
    unknown = pick.notna() & ~pick.isin(list(known))
    if unknown.any():
        notes.append(f"{int(unknown.sum())} ticket(s) name a schedule that is not in schedule: the default applies")
    pick = pick.where(~unknown)
    changed = rows.groupby("ticket")["schedule"].nunique()
    if (changed > 1).any():
        notes.append(
            f"{int((changed > 1).sum())} ticket(s) changed schedule; each keeps the one in force at creation (§11)"
        )
    return np.where(pick.notna().to_numpy(), pick.to_numpy(dtype=object), chosen)
