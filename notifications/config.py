"""Notification settings, read once from the environment.

`QM_NOTIFY_URLS` holds apprise URLs separated by spaces or newlines, or `QM_NOTIFY_URLS_FILE`
names a file of them (a line starting with `#` is a comment). An entry may start with the families it is for,
`trades,summary=mailto://...`; without them a channel hears every family.

Secrets live in those URLs (bot tokens, webhook paths, passwords), so a channel is only ever
shown by its label (`tgram#1`), and `redact` masks every part of the URLs but their scheme,
port and dotted host names in any text that reaches the logs or the database.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import unquote

from notifications.events import FAMILIES, Level

_MIN_SECRET = 3
# Query options of apprise URLs that never hold a secret, so their values are left readable.
_PLAIN_OPTIONS = {"mode", "format", "overflow", "method", "retry", "wait", "optional", "cto", "rto", "image",
                  "detect", "silent", "preview", "tts", "avatar", "footer", "batch", "priority", "verify",
                  "content", "mdv", "album", "fields", "footer_logo"}


@dataclass(frozen=True)
class Channel:
    label: str
    url: str = field(repr=False)
    families: frozenset[str] | None = None  # None: every family
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def hears(self, family: str) -> bool:
        return self.families is None or family in self.families or family == "test"


@dataclass(frozen=True)
class NotifyConfig:
    channels: tuple[Channel, ...] = ()
    levels: Mapping[str, Level] = field(default_factory=lambda: {f: level for f, (_, level) in FAMILIES.items()})
    trade_interval: float = 900.0  # seconds: at most one round-trip message per symbol this often
    dedup_seconds: float = 600.0  # an identical alert again within this is not sent again
    retries: int = 3  # after a failed delivery, per channel
    backoff: float = 2.0  # seconds before the first retry, doubling
    queue_size: int = 1000
    summary_hour: int = 0  # UTC hour of the daily summary
    stream_down_seconds: float = 120.0
    error_streak: int = 5  # failed ticks in a row before "repeated exchange errors"

    @property
    def enabled(self) -> bool:
        return bool(self.channels)

    def wants(self, family: str, level: Level) -> bool:
        return level >= self.levels.get(family, Level.INFO) and any(c.hears(family) for c in self.channels)

    def redact(self, text: str) -> str:
        return mask(text, {s for c in self.channels for s in c.secrets})


def mask(text: str, secrets: set[str]) -> str:
    """`text` with each of `secrets` replaced by `****`, the longest first."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "****")
    return text


def secrets_of(url: str) -> tuple[str, ...]:
    """The parts of an apprise URL that may be secret: user names and passwords, a host that is
    not a dotted name (Telegram's bot token, a webhook id), every path segment, and the query's
    values but those of plain options. Also the whole URL after its scheme."""
    scheme, _, rest = url.partition("://")
    netloc, path, query = re.match(r"([^/?#]*)([^?]*)\??(.*)", rest).groups()  # type: ignore[union-attr]
    userinfo, at, host = netloc.rpartition("@")
    pieces = {rest, userinfo, *userinfo.split(":")} if at else {rest}
    hostname = host.rsplit(":", 1)[0] if host.rsplit(":", 1)[-1].isdigit() else host
    if "." not in hostname:
        pieces |= {host, *host.split(":")}
    pieces |= {segment for segment in path.split("/")}
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key.lower() not in _PLAIN_OPTIONS:
            pieces.add(unquote(value))
            pieces.add(value)
    return tuple(sorted(p for p in pieces if len(p) >= _MIN_SECRET and not p.isdigit()))


def quiet_apprise() -> None:
    """apprise logs the URLs it loads and the requests it makes at DEBUG: its records stay with
    apprise's own logger (the sender collects its warnings and logs them redacted)."""
    import logging

    logger = logging.getLogger("apprise")
    logger.propagate = False
    logger.setLevel(logging.WARNING)


def parse_channels(value: str, *, name: str = "QM_NOTIFY_URLS") -> tuple[Channel, ...]:
    """Channels from apprise URLs separated by spaces or newlines (lines starting with `#` are
    comments)."""
    lines = [line for line in value.splitlines() if not line.lstrip().startswith("#")]
    entries, where = " ".join(lines).split(), name
    if not entries:
        return ()
    import apprise  # loads its plugins (about 0.3 s): only when there are URLs

    quiet_apprise()  # it logs each URL it loads at DEBUG

    channels: list[Channel] = []
    counts: dict[str, int] = {}
    for number, entry in enumerate(entries, 1):
        head, sep, tail = entry.partition("://")
        if not sep:
            raise ValueError(f"{where}: entry {number} is not a URL (no '://')")
        families: frozenset[str] | None = None
        if "=" in head:
            wanted, head = head.rsplit("=", 1)
            names = {f.strip() for f in wanted.split(",") if f.strip()}
            unknown = sorted(names - set(FAMILIES) - {"all"})
            if unknown:
                raise ValueError(f"{where}: entry {number} names unknown families {', '.join(unknown)} "
                                 f"(known: {', '.join(FAMILIES)}, all)")
            families = None if "all" in names else frozenset(names)
        url = f"{head}://{tail}"
        if apprise.Apprise.instantiate(url) is None:
            raise ValueError(f"{where}: entry {number} (scheme {head!r}) is not a URL apprise can send to")
        counts[head] = counts.get(head, 0) + 1
        channels.append(Channel(label=f"{head}#{counts[head]}", url=url, families=families, secrets=secrets_of(url)))
    return tuple(channels)


def parse_levels(value: str, *, name: str = "QM_NOTIFY_LEVELS") -> dict[str, Level]:
    """`family=level` pairs, comma separated, over the defaults."""
    levels = {f: level for f, (_, level) in FAMILIES.items()}
    for pair in (p.strip() for p in value.split(",") if p.strip()):
        family, sep, word = pair.partition("=")
        family = family.strip()
        if not sep or family not in FAMILIES and family != "all":
            raise ValueError(f"{name}: {pair!r} is not family=level (families: {', '.join(FAMILIES)}, all)")
        try:
            level = Level.named(word)
        except ValueError as exc:
            raise ValueError(f"{name}: {pair!r}: {exc}") from None
        for f in (FAMILIES if family == "all" else [family]):
            levels[f] = level
    return levels
