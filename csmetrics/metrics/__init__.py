"""Metric families: each is partial aggregates per (period, segment) plus a finalize step."""
