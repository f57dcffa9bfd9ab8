"""Reading tables from Parquet: the same frame as pandas' reader, each Arrow column freed as it is converted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from csmetrics.io import read_table


def mixed_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 4],
            "ticket_id": pd.array([10, None, 30, 40], dtype="Int64"),
            "score": [1.0, np.nan, 3.0, 4.0],
            "amount": [1.5, 2.5, 3.5, 4.5],
            "created_at": pd.to_datetime(["2024-01-01", None, "2024-03-01", "2024-04-01"], utc=True),
            "channel": ["email", "chat", None, "email"],
            "comment": ["fine", None, "slow", ""],
        }
    )


@pytest.mark.parametrize("as_folder", [False, True])
def test_a_parquet_read_equals_pandas_reader_and_stays_assignable(tmp_path, as_folder):
    frame = mixed_table()
    if as_folder:
        path = tmp_path / "tickets"
        path.mkdir()
        frame.iloc[:2].to_parquet(path / "part-0.parquet")
        frame.iloc[2:].to_parquet(path / "part-1.parquet")
    else:
        path = tmp_path / "tickets.parquet"
        frame.to_parquet(path)
    got = read_table(path, ("channel",))
    expected = pd.read_parquet(path, read_dictionary=["channel"])
    pd.testing.assert_frame_equal(got, expected)
    assert isinstance(got["channel"].dtype, pd.CategoricalDtype)
    assert got["ticket_id"].dtype == "Int64" and got["created_at"].dt.tz is not None
    # the frame is the caller's to change: no column left pointing at Arrow's read-only buffers (what
    # pyarrow's split_blocks gives, and then pandas fails to assign)
    got.loc[0, "amount"] = 9.0
    got["score"] = got["score"].fillna(0.0)
    assert got.loc[0, "amount"] == 9.0 and got["score"].tolist() == [1.0, 0.0, 3.0, 4.0]
