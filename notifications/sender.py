"""Delivery: a bounded queue and one sender thread per process, so a channel that hangs or fails
never slows a trading loop.

The sender drops an identical alert seen within `dedup_seconds`, claims a keyed event in the
database (its unique `key`: of several instances that see the same event, the first to insert
it sends it), delivers to each channel that hears the event's family with retries and backoff,
and records the outcome as a `Notification`. Round trips are batched per symbol: at most one
message per symbol every `trade_interval` seconds. Failures are logged (redacted) and counted;
nothing here raises into the caller.
"""
from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, close_old_connections, connection
from django.utils import timezone
from prometheus_client import REGISTRY, Counter, Gauge

from notifications.config import Channel, NotifyConfig, mask, quiet_apprise
from notifications.events import KINDS, Kind, Level

log = logging.getLogger("quantmesh.notify")


def _metric(kind, name: str, documentation: str, labels: tuple[str, ...]) -> Any:
    return REGISTRY._names_to_collectors.get(name) or kind(name, documentation, labels)


NOTIFICATIONS = _metric(Counter, "quantmesh_notifications_total",
                        "Notifications by family and outcome (delivered, partial, failed, deduplicated, "
                        "elsewhere: sent by another instance, dropped: queue full).", ("family", "outcome"))
DELIVERY_FAILURES = _metric(Counter, "quantmesh_notification_delivery_failures_total",
                            "Delivery attempts that failed, per channel label.", ("channel",))
QUEUE_DEPTH = _metric(Gauge, "quantmesh_notification_queue_depth", "Notifications waiting for the sender.", ())

_TYPES = {Level.INFO: "info", Level.WARNING: "warning", Level.CRITICAL: "failure"}
_WAKE = object()  # a queue item that only wakes the sender (a round-trip batch is due)


@dataclass(frozen=True)
class Message:
    kind: Kind
    text: str
    subject: str = ""
    key: str | None = None
    at: datetime | None = None

    @property
    def title(self) -> str:
        return " · ".join(p for p in ("QuantMesh", self.subject, self.kind.title) if p)


@dataclass
class _Batch:
    quote: str
    count: int = 0
    profit: Decimal = Decimal(0)
    since: datetime | None = None


@dataclass(frozen=True)
class Delivery:
    channel: str
    delivered: bool
    attempts: int
    error: str = ""

    @property
    def outcome(self) -> str:
        return "delivered" if self.delivered else f"failed: {self.error}"


class _Capture(logging.Handler):
    """Collects what apprise logs at WARNING and above during one delivery attempt (apprise may
    log from its own worker threads, so attempts are taken one at a time, under `one_at_a_time`)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.one_at_a_time = threading.Lock()  # not `lock`: logging.Handler's own
        self.lines: list[str] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.lines is not None:
            self.lines.append(record.getMessage())


class _Redact(logging.Filter):
    """Masks the channels' secrets in records of the loggers that may print their URLs."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        masked = mask(text, _secrets)
        if masked != text:
            record.msg, record.args = masked, ()
        return True


_capture = _Capture()
_redactor = _Redact()
_secrets: set[str] = set()  # of every hub made in this process


def _guard_logs(config: NotifyConfig) -> None:
    """apprise logs request URLs and payloads at DEBUG, urllib3 the paths it requests: apprise's
    log stays here (this module logs and stores only redacted text), and both have the
    channels' secrets masked should anything print them."""
    _secrets.update(s for c in config.channels for s in c.secrets)
    quiet_apprise()
    logger = logging.getLogger("apprise")
    if _capture not in logger.handlers:
        logger.addHandler(_capture)
    for name in ("apprise", "urllib3.connectionpool"):
        if _redactor not in logging.getLogger(name).filters:
            logging.getLogger(name).addFilter(_redactor)


class Hub:
    def __init__(self, config: NotifyConfig, *, instance_id: str, clock=time.monotonic) -> None:
        self.config = config
        self.instance_id = instance_id
        self.clock = clock
        self.pid = os.getpid()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=config.queue_size)
        self._lock = threading.Lock()
        self._recent: dict[str, float] = {}
        self._batches: dict[str, _Batch] = {}
        self._last_batch: dict[str, float] = {}
        self._plugins: dict[str, Any] = {}
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._last_drop_log = -1e9
        _guard_logs(config)

    # --- the callers' side (never blocks, never raises) ------------------------------------------
    def emit(self, kind_name: str, text: str, *, subject: str = "", key: str | None = None,
             shared: bool = False) -> bool:
        """Queue one event. `shared`: every instance may see it (an account's rate limit), so it
        gets a key per dedup window and only one instance sends it."""
        kind = KINDS[kind_name]
        if not self.config.wants(kind.family, kind.level):
            return False
        if shared and key is None:
            window = int(time.time() // max(self.config.dedup_seconds, 1))
            key = f"{kind.name}:{subject}:{window}"[:150]
        return self._put(Message(kind, text, subject[:128], key, timezone.now()))

    def round_trips(self, subject: str, *, count: int, profit: Decimal, quote: str) -> None:
        """Add a fill's realised PnL (and the round trip it completed, if any) to the symbol's
        batch: the batch is sent once it holds a round trip and its interval allows."""
        if not self.config.wants("trades", Level.INFO):
            return
        with self._lock:
            batch = self._batches.setdefault(subject, _Batch(quote))
            batch.count += count
            batch.profit += profit
            batch.since = batch.since or timezone.now()
        self._put(_WAKE)

    def _put(self, item: Any) -> bool:
        self._ensure_thread()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            if item is not _WAKE:
                NOTIFICATIONS.labels(item.kind.family, "dropped").inc()
                now = self.clock()
                if now - self._last_drop_log > 60:
                    self._last_drop_log = now
                    log.warning("notification queue full (%d): %s dropped", self.config.queue_size, item.kind.name)
            return False
        QUEUE_DEPTH.set(self._queue.qsize())
        return True

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="qm-notify", daemon=True)
                    self._thread.start()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued so far has been handled; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        return True

    def close(self, timeout: float = 10.0) -> bool:
        """Send what is batched and queued (within `timeout`), then stop the sender."""
        if self._thread is None:
            return True
        for message in self._due_batches(force=True):
            self._put(message)
        done = self.flush(timeout)
        self._closing.set()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout=1)
        self._thread = None
        self._closing.clear()  # a later event starts a new sender
        return done

    # --- the sender thread ---------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._closing.is_set():
                try:
                    item, got = self._queue.get(timeout=self._until_next_batch()), True
                except queue.Empty:
                    item, got = _WAKE, False
                try:
                    if item is None:
                        break
                    QUEUE_DEPTH.set(self._queue.qsize())
                    if item is not _WAKE:
                        self._handle(item)
                    for message in self._due_batches():
                        self._handle(message)
                except Exception:
                    log.exception("notification sender step failed")
                finally:
                    if got:
                        self._queue.task_done()
        finally:
            connection.close()

    def _until_next_batch(self) -> float:
        with self._lock:
            waiting = [s for s, batch in self._batches.items() if batch.count]
            if not waiting:
                return 1.0
            due = min(self._last_batch.get(s, -1e18) + self.config.trade_interval for s in waiting)
        return min(max(due - self.clock(), 0.01), 1.0)

    def _due_batches(self, force: bool = False) -> list[Message]:
        now = self.clock()
        out = []
        with self._lock:
            for subject, batch in list(self._batches.items()):
                if not batch.count:
                    continue  # fills without a completed round trip yet: they wait for one
                if force or now >= self._last_batch.get(subject, -1e18) + self.config.trade_interval:
                    del self._batches[subject]
                    self._last_batch[subject] = now
                    since = (batch.since or timezone.now()).astimezone(dt_timezone.utc).strftime("%H:%M UTC")
                    trips = "1 round trip" if batch.count == 1 else f"{batch.count} round trips"
                    out.append(Message(KINDS["round_trips"], f"{subject}: {trips} since {since}, "
                                       f"realised {batch.profit:+.4f} {batch.quote} after fees", subject,
                                       None, timezone.now()))
        return out

    def _duplicate(self, message: Message) -> bool:
        signature = hashlib.sha256(f"{message.kind.name}\0{message.subject}\0{message.text}".encode()).hexdigest()
        now = self.clock()
        seen = self._recent.get(signature)
        if len(self._recent) > 4096:
            self._recent = {s: t for s, t in self._recent.items() if now - t < self.config.dedup_seconds}
        if seen is not None and now - seen < self.config.dedup_seconds:
            return True
        self._recent[signature] = now
        return False

    def _handle(self, message: Message) -> list[Delivery] | None:
        """Deduplicate, claim, deliver and record one message; the deliveries, or None when it
        was not sent (a duplicate, or sent by another instance)."""
        family = message.kind.family
        if message.kind.name != "round_trips" and self._duplicate(message):
            NOTIFICATIONS.labels(family, "deduplicated").inc()
            return None
        close_old_connections()
        row = self._claim(message)
        if row is False:
            NOTIFICATIONS.labels(family, "elsewhere").inc()
            return None
        deliveries = self.send(message)
        delivered = sum(d.delivered for d in deliveries)
        status = "delivered" if delivered == len(deliveries) else "failed" if not delivered else "partial"
        NOTIFICATIONS.labels(family, status).inc()
        errors = "; ".join(f"{d.channel}: {d.error}" for d in deliveries if not d.delivered)
        if errors:
            log.warning("notification %s %s not delivered: %s", message.kind.name, message.subject, errors)
        if row is not None:
            from notifications.models import Notification

            try:
                Notification.objects.filter(pk=row).update(
                    status=status, sent_at=timezone.now(), attempts=max((d.attempts for d in deliveries), default=0),
                    channels=[{"channel": d.channel, "outcome": d.outcome, "attempts": d.attempts} for d in deliveries],
                    error=errors[:300],
                )
            except Exception as exc:
                log.error("notification %s sent (%s) but not recorded: %s", message.kind.name, status, exc)
        return deliveries

    def send_now(self, kind_name: str, text: str, *, subject: str = "") -> list[Delivery]:
        """Deliver and record one message on the caller's thread (`manage.py notify`)."""
        message = Message(KINDS[kind_name], text, subject, None, timezone.now())
        return self._handle(message) or []

    def _claim(self, message: Message) -> int | None | bool:
        """Record the notification before sending it: its id; False when another instance (or
        an earlier run) has the key; None when the database cannot take it (sent anyway)."""
        from notifications.models import Notification

        try:
            row = Notification.objects.create(
                created_at=message.at or timezone.now(), event=message.kind.name, family=message.kind.family,
                level=message.kind.level.name.lower(), subject=message.subject, title=message.title[:200],
                text=message.text, key=message.key, instance_id=self.instance_id[:64],
                channels=[c.label for c in self.channels_for(message.kind.family)],
            )
        except IntegrityError:
            return False
        except Exception as exc:  # a database down must not silence an alert
            log.error("notification %s not recorded (sending it anyway): %s", message.kind.name, exc)
            return None
        return row.pk

    # --- delivery ------------------------------------------------------------------------------
    def channels_for(self, family: str) -> list[Channel]:
        return [c for c in self.config.channels if c.hears(family)]

    def send(self, message: Message) -> list[Delivery]:
        """Deliver to every channel that hears the message's family, each with its retries."""
        return [self.deliver(channel, message) for channel in self.channels_for(message.kind.family)]

    def deliver(self, channel: Channel, message: Message) -> Delivery:
        error = ""
        attempts = 0
        for attempt in range(self.config.retries + 1):
            if attempt and self._closing.wait(self.config.backoff * 2 ** (attempt - 1)):
                break
            attempts += 1
            ok, error = self._attempt(channel, message)
            if ok:
                return Delivery(channel.label, True, attempts)
            DELIVERY_FAILURES.labels(channel.label).inc()
        return Delivery(channel.label, False, attempts, error)

    def _attempt(self, channel: Channel, message: Message) -> tuple[bool, str]:
        with _capture.one_at_a_time:
            _capture.lines = lines = []
            try:
                plugin = self._plugins.get(channel.label)
                if plugin is None:
                    import apprise

                    plugin = apprise.Apprise()
                    if not plugin.add(channel.url):  # checked when the settings were read
                        raise ValueError(f"{channel.label}: not a URL apprise can send to")
                    self._plugins[channel.label] = plugin
                # The text is plain: apprise turns it into HTML or Markdown for the channels that want it.
                ok = bool(plugin.notify(body=message.text, title=message.title, body_format="text",
                                        notify_type=_TYPES.get(message.kind.level, "info")))
            except Exception as exc:
                ok = False
                lines.append(f"{type(exc).__name__}: {exc}")
            finally:
                _capture.lines = None
        return ok, "" if ok else self.config.redact("; ".join(lines) or "not delivered")[:300]
