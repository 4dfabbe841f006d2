"""Timestamps: integer microseconds since the Unix epoch (UTC) in envelopes."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

__all__ = ["from_micros", "now_micros", "to_micros"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def now_micros() -> int:
    return time.time_ns() // 1000


def to_micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    return (moment - EPOCH) // _MICRO


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)
