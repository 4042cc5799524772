"""What the operator is told about: each kind of event, its family and its level.

The family decides which channels hear of it (`QM_NOTIFY_URLS` tags) and the level whether it is
sent at all (`QM_NOTIFY_LEVELS`, a minimum level per family).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Level(IntEnum):
    INFO = 20
    WARNING = 30
    CRITICAL = 50
    OFF = 100  # as a family's minimum: nothing of it is sent

    @classmethod
    def named(cls, word: str) -> Level:
        try:
            return cls[word.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown level {word.strip()!r} (use info, warning, critical or off)") from None


# family -> what it covers, and its default minimum level
FAMILIES: dict[str, tuple[str, Level]] = {
    "lifecycle": ("bot started or stopped", Level.INFO),
    "trades": ("completed round trips, batched per symbol", Level.INFO),
    "symbols": ("a symbol paused, resumed or stopped, by the operator or a risk rule", Level.INFO),
    "instances": ("a lease lost or taken over, an instance gone silent", Level.WARNING),
    "reconcile": ("a reconcile discrepancy that needs a person", Level.WARNING),
    "exchange": ("rate limits and bans, streams down, repeated exchange errors", Level.WARNING),
    "summary": ("the daily summary per account", Level.INFO),
}


@dataclass(frozen=True)
class Kind:
    name: str
    family: str
    level: Level
    title: str


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("bot_started", "lifecycle", Level.INFO, "bot started"),
    Kind("bot_stopped", "lifecycle", Level.INFO, "bot stopped"),
    Kind("round_trips", "trades", Level.INFO, "round trips"),
    Kind("symbol_paused", "symbols", Level.WARNING, "paused"),
    Kind("symbol_resumed", "symbols", Level.INFO, "resumed"),
    Kind("symbol_stopped", "symbols", Level.WARNING, "stopped"),
    Kind("lease_lost", "instances", Level.WARNING, "lease lost"),
    Kind("lease_taken_over", "instances", Level.WARNING, "lease taken over"),
    Kind("instance_silent", "instances", Level.CRITICAL, "instance silent"),
    Kind("reconcile_attention", "reconcile", Level.CRITICAL, "reconcile needs a person"),
    Kind("rate_limited", "exchange", Level.WARNING, "rate limited"),
    Kind("ip_banned", "exchange", Level.CRITICAL, "IP BANNED"),
    Kind("stream_down", "exchange", Level.WARNING, "streams down"),
    Kind("stream_back", "exchange", Level.WARNING, "streams back"),
    Kind("exchange_errors", "exchange", Level.WARNING, "repeated exchange errors"),
    Kind("daily_summary", "summary", Level.INFO, "daily summary"),
    Kind("test", "lifecycle", Level.CRITICAL, "test message"),
)}
assert all(k.family in FAMILIES for k in KINDS.values())
