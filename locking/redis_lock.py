"""RedisLock: the fenced lock service for several instances sharing one Redis.

Keys (the namespace is explicit; Django's cache key prefix and version never apply):

    <ns><key>          the lock: "<token>:<owner>", with a millisecond TTL (PX)
    <ns>fence:<key>    the fence counter; INCR'd atomically with every grant, never reset by us
    <ns>wake:<key>     a one-element list pushed on release; waiters BLPOP it instead of polling

One round trip per operation: acquire, release and extend are each one Lua script (EVALSHA).
The client is our own, with short socket timeouts and redis-py's retries turned off: a retried
acquire or release could be applied twice or with its reply lost, and a dead server must turn into
`LockBackendUnavailable` within about one socket timeout, not after a retry loop. The scripts go
out on one connection per thread, written and read directly, with no pool checkout per command.

The acquire script is idempotent for its owner: if the key already holds our owner id (our earlier
acquire went through but its reply was lost), it answers with that grant instead of "busy".
"""
from __future__ import annotations

import functools
import logging
import re
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from hiredis import pack_command
from redis import ConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.connection import AbstractConnection, UnixDomainSocketConnection, parse_url
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.retry import Retry

from locking import base
from locking.base import (
    Attempt,
    Grant,
    LockBackendUnavailable,
    LockService,
    LockStartupError,
    NotOwned,
    PendingGrant,
    Seconds,
    to_seconds,
    ttl_to_ms,
)

logger = logging.getLogger("quantmesh.locking")

DEFAULT_NAMESPACE = "quantmesh:lock:"

# KEYS: lock, fence counter. ARGV: owner, ttl ms, fence floor, fence counter ttl ms (0 = keep).
# Returns {token, ttl ms, server time us}; token 0 means another owner holds the key and
# ttl ms is then that holder's remaining TTL (-1: none).
ACQUIRE_SCRIPT = """
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local value = redis.call('GET', KEYS[1])
if value then
    local sep = string.find(value, ':', 1, true)
    if sep and string.sub(value, sep + 1) == ARGV[1] then
        return {tonumber(string.sub(value, 1, sep - 1)), redis.call('PTTL', KEYS[1]), now_us}
    end
    return {0, redis.call('PTTL', KEYS[1]), now_us}
end
local token = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[3])
if token <= floor then
    token = floor + 1
    redis.call('SET', KEYS[2], string.format('%d', token))
end
if ARGV[4] ~= '0' then
    redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
redis.call('SET', KEYS[1], string.format('%d', token) .. ':' .. ARGV[1], 'NX', 'PX', ARGV[2])
return {token, tonumber(ARGV[2]), now_us}
"""

# KEYS: lock, wake-up list. ARGV: the grant's value, wake-up signal lifetime ms.
# Returns {status, holder token, server time us}: 1 released, 0 key free, -1 held by holder token.
RELEASE_SCRIPT = """
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local value = redis.call('GET', KEYS[1])
if value == ARGV[1] then
    redis.call('DEL', KEYS[1])
    redis.call('DEL', KEYS[2])
    redis.call('LPUSH', KEYS[2], '1')
    redis.call('PEXPIRE', KEYS[2], ARGV[2])
    return {1, 0, now_us}
end
if not value then
    return {0, 0, now_us}
end
local sep = string.find(value, ':', 1, true)
return {-1, tonumber(string.sub(value, 1, (sep or 1) - 1)) or 0, now_us}
"""

# A deferred release and the thread's next acquire in one script, so they travel as one message.
# Each script's text runs unchanged as a function: its KEYS and ARGV are the function's arguments.
# KEYS: the release's two keys, then the acquire's two. ARGV: the release's two arguments, then the
# acquire's four. Returns the release's {status, holder token}, then the acquire's three values.
RELEASE_THEN_ACQUIRE_SCRIPT = (
    "local function release(KEYS, ARGV)\n" + RELEASE_SCRIPT + "end\n"
    "local function acquire(KEYS, ARGV)\n" + ACQUIRE_SCRIPT + "end\n"
    "local r = release({KEYS[1], KEYS[2]}, {ARGV[1], ARGV[2]})\n"
    "local a = acquire({KEYS[3], KEYS[4]}, {ARGV[3], ARGV[4], ARGV[5], ARGV[6]})\n"
    "return {r[1], r[2], a[1], a[2], a[3]}\n"
)

# KEYS: lock. ARGV: the grant's value, new ttl ms. Returns {status, holder token} as release does.
EXTEND_SCRIPT = """
local value = redis.call('GET', KEYS[1])
if value == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, 0}
end
if not value then
    return {0, 0}
end
local sep = string.find(value, ':', 1, true)
return {-1, tonumber(string.sub(value, 1, (sep or 1) - 1)) or 0}
"""

_RESERVED = ("fence:", "wake:")


class _Release(NamedTuple):
    """A release sent, or to be sent, without waiting for its answer: the grant, whether an
    earlier release of it failed, the release script's keys and arguments, and the process's
    fork count when it was made (a forked child must not send its parent's release)."""

    grant: Grant
    retried: bool
    keys: list[str]
    args: list[Any]
    forks: int = -1


@dataclass(frozen=True)
class ServerCheck:
    """What `check_server()` found, for the start-up log."""

    address: str
    version: str
    maxmemory_policy: str | None  # None when CONFIG is not available to us
    persistence: str


def _pool(url: str, *, socket_timeout: float, connect_timeout: float,
          max_connections: int | None, client_name: str) -> ConnectionPool:
    options = parse_url(url)
    # Our own timeouts win over any in the URL; retries are off (Retry(..., 0) means one attempt).
    options.update(
        socket_timeout=socket_timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=0,
        # RESP2: no HELLO round trip on connect and no server push messages on lock connections.
        protocol=2,
        client_name=client_name,
    )
    if options.get("connection_class") is not UnixDomainSocketConnection:
        options["socket_connect_timeout"] = connect_timeout
    if max_connections is not None:
        options["max_connections"] = max_connections
    return ConnectionPool(**options)


def redis_address(url: str) -> str:
    """host:port/db (or the socket path) of a Redis URL, without credentials."""
    options = parse_url(url)
    if "path" in options:
        return f"{options['path']}/{options.get('db', 0)}"
    host = options.get("host", "localhost")
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{options.get('port', 6379)}/{options.get('db', 0)}"


class RedisLock(LockService):
    """Fenced Redis locks. See the module docstring for the key layout and the scripts.

    socket_timeout: bound on each command's reply (and connect_timeout on connecting); keep it far
        below the shortest TTL.
    wait_slice: longest single BLPOP while waiting in lock(); a waiter also wakes when the
        holder's TTL runs out, so a holder that died without releasing is noticed on time.
    short_wait: waits shorter than this sleep locally instead of BLPOP (Redis times blocked
        clients out on its `hz` tick, 100 ms by default).
    wake_signal_ttl: lifetime of a release's wake-up signal nobody has consumed.
    fence_ttl: if set, a key's fence counter expires this long after its last grant. Use it for
        high-cardinality keys whose tokens are not stored anywhere; by default counters are kept.
    """

    backend = "redis"

    def __init__(
        self,
        url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        instance_id: str | None = None,
        socket_timeout: float = 0.25,
        connect_timeout: float | None = None,
        max_connections: int | None = None,
        wait_slice: float = 2.0,
        short_wait: float = 0.1,
        wake_signal_ttl: float = 1.0,
        fence_ttl: Seconds | None = None,
        drift_factor: float = 0.01,
        record_metrics: bool = True,
    ) -> None:
        super().__init__(instance_id=instance_id, drift_factor=drift_factor, record_metrics=record_metrics)
        if not isinstance(namespace, str):
            raise TypeError(f"namespace must be a string, got {namespace!r}")
        self.namespace = namespace
        self.address = redis_address(url)
        self.socket_timeout = to_seconds(socket_timeout, "socket_timeout")
        self.wait_slice = to_seconds(wait_slice, "wait_slice")
        self.short_wait = to_seconds(short_wait, "short_wait")
        # BLPOP with timeout 0 blocks forever: never let a wait that short reach Redis.
        if not 0.001 <= self.short_wait <= self.wait_slice:
            raise ValueError("need 0.001 <= short_wait <= wait_slice (seconds)")
        self._signal_ms = ttl_to_ms(wake_signal_ttl)
        self._fence_ttl_ms = 0 if fence_ttl is None else ttl_to_ms(fence_ttl)
        connect = self.socket_timeout if connect_timeout is None else to_seconds(connect_timeout, "connect_timeout")
        # CLIENT LIST shows which instance a lock connection belongs to.
        self.client_name = "qm-lock-" + re.sub(r"[^A-Za-z0-9._-]", "_", self.instance_id)[:64]
        self._pool = _pool(url, socket_timeout=self.socket_timeout, connect_timeout=connect,
                           max_connections=max_connections, client_name=self.client_name)
        # BLPOP blocks up to wait_slice, so waiting gets its own connections with a longer read timeout.
        self._wait_pool = _pool(url, socket_timeout=self.wait_slice + self.socket_timeout,
                                connect_timeout=connect, max_connections=max_connections,
                                client_name=self.client_name)
        self._client = Redis(connection_pool=self._pool)
        # Scripts run on one connection per thread (see the module docstring); kept weakly, so a
        # thread's connection closes with the thread, and close() can still reach the live ones.
        self._thread = threading.local()
        self._thread_connections: weakref.WeakSet[AbstractConnection] = weakref.WeakSet()
        self._thread_connections_lock = threading.Lock()
        self._waiter = Redis(connection_pool=self._wait_pool)
        self._acquire_script = self._client.register_script(ACQUIRE_SCRIPT)
        self._release_script = self._client.register_script(RELEASE_SCRIPT)
        self._release_then_acquire_script = self._client.register_script(RELEASE_THEN_ACQUIRE_SCRIPT)
        self._extend_script = self._client.register_script(EXTEND_SCRIPT)

    def __repr__(self) -> str:
        return f"<RedisLock {self.address} namespace={self.namespace!r}>"

    # -- key layout --

    def lock_key(self, key: str) -> str:
        if key.startswith(_RESERVED):
            raise ValueError(f"lock keys must not start with {' or '.join(_RESERVED)}: {key!r}")
        return self.namespace + key

    def fence_key(self, key: str) -> str:
        return f"{self.namespace}fence:{key}"

    def wake_key(self, key: str) -> str:
        return f"{self.namespace}wake:{key}"

    # -- start-up --

    def check_server(self) -> ServerCheck:
        """Refuse to start on an unreachable Redis or one that may evict lock keys.

        Raises LockStartupError. When CONFIG is not allowed (managed Redis), the eviction policy
        cannot be read: that is logged as a warning and the check passes.
        """
        try:
            self._client.ping()
            version = str(self._client.info("server").get("redis_version", "?"))
        except RedisError as exc:
            raise LockStartupError(f"lock backend: cannot reach Redis at {self.address}: {exc}") from exc
        policy: str | None
        persistence = "unknown"
        try:
            policy = str(self._client.config_get("maxmemory-policy").get("maxmemory-policy"))
            save = self._client.config_get("save").get("save") or "off"
            aof = self._client.config_get("appendonly").get("appendonly")
            persistence = f"rdb save={save!r} appendonly={aof}"
        except ResponseError as exc:
            policy = None
            logger.warning("lock backend: cannot read CONFIG on Redis at %s (%s); make sure its "
                           "maxmemory-policy is noeviction", self.address, exc)
        except RedisError as exc:
            raise LockStartupError(f"lock backend: cannot reach Redis at {self.address}: {exc}") from exc
        if policy is not None and policy != "noeviction":
            raise LockStartupError(
                f"lock backend: Redis at {self.address} has maxmemory-policy {policy!r}; lock keys "
                f"could be evicted. Set maxmemory-policy noeviction (or use a dedicated Redis).")
        try:  # loaded now, and this thread connected, so the first acquire is one round trip too
            for script in (self._acquire_script, self._release_script, self._release_then_acquire_script,
                           self._extend_script):
                self._client.script_load(script.script)
            self._thread_connection().connect()
        except RedisError as exc:
            raise LockStartupError(f"lock backend: cannot load scripts on Redis at {self.address}: {exc}") from exc
        check = ServerCheck(address=self.address, version=version, maxmemory_policy=policy,
                            persistence=persistence)
        logger.info("lock backend: Redis %s at %s, maxmemory-policy=%s, persistence: %s, namespace %r",
                    version, self.address, policy or "unknown", persistence, self.namespace)
        return check

    # -- backend hooks --

    def _acquire(self, key: str, ttl_ms: int, owner: str, floor: int, timeout: float | None) -> Attempt:
        keys, args = self._acquire_call(key, ttl_ms, owner, floor)
        end = None if timeout is None else time.monotonic() + timeout
        conflicted = False
        while True:
            sent = time.monotonic()
            reply = self._script("acquire", key, self._acquire_script, keys, args)
            grant = self._grant_from(key, owner, sent, reply)
            if grant is not None:
                return Attempt(grant, conflicted)
            conflicted = True
            pttl = reply[1]
            if end is None:
                return Attempt(None, conflicted)
            remaining = end - time.monotonic()
            if remaining <= 0:
                return Attempt(None, conflicted)
            # Wake on a release signal, or when the holder's TTL runs out, whichever comes first.
            wait = min(remaining, self.wait_slice)
            if int(pttl) >= 0:
                wait = min(wait, int(pttl) / 1000)
            self._wait_for_release(key, wait)

    def _acquire_call(self, key: str, ttl_ms: int, owner: str, floor: int) -> tuple[list[str], list[Any]]:
        """The acquire script's keys and arguments."""
        return [self.lock_key(key), self.fence_key(key)], [owner, ttl_ms, floor, self._fence_ttl_ms]

    def _grant_from(self, key: str, owner: str, sent: float, reply: Any) -> Grant | None:
        """The grant in an acquire script's reply (None: another owner holds the key)."""
        token, pttl, server_us = reply
        if not token:
            return None
        pttl = max(int(pttl), 0)
        return Grant(key=key, token=int(token), owner=owner, acquired=sent, ttl_ms=pttl,
                     deadline=self.deadline(sent, pttl), server_time_us=int(server_us))

    def request(self, key: str, ttl: Seconds, *, floor: int = 0) -> PendingGrant:
        """Send the acquire script and return; its answer is read by wait(), or before this
        thread's next script, whichever comes first. One answer at most is outstanding per thread:
        sending reads the one before. A release this thread deferred goes in the same script."""
        ttl_ms, owner, label = self._before_acquire(key, ttl, floor)
        keys, args = self._acquire_call(key, ttl_ms, owner, floor)
        deferred = self._take_deferred()
        connection = self._thread_connection()
        script = self._acquire_script
        if deferred is not None:
            script, keys, args = self._release_then_acquire_script, deferred.keys + keys, deferred.args + args
        sent = time.monotonic()
        try:
            self._send_script(connection, script, keys, args)
        except BaseException as exc:
            failure = self._connection_failed(connection, "acquire", key, exc)
            self._release_failed(deferred, failure)
            self._acquire_failed(key, owner, label, failure)
            raise failure from exc
        pending = PendingGrant(self._thread_connection)  # reading this thread's connection reads the answer

        def read(connection: AbstractConnection) -> AbstractConnection:
            try:
                reply = self._read_script_reply(connection, script, keys, args)
            except BaseException as exc:
                failure = self._connection_failed(connection, "acquire", key, exc)
                self._release_failed(deferred, failure)
                self._acquire_failed(key, owner, label, failure)
                pending.fail(failure)
                return self._thread_connection()
            if deferred is not None:
                self._release_answered(deferred, reply[0], reply[1])
                reply = reply[2:]
            grant = self._grant_from(key, owner, sent, reply)
            pending.answer(self._acquired(key, label, owner, None, grant, grant is None))
            return connection

        self._thread.unread = read
        return pending

    def _wait_for_release(self, key: str, seconds: float) -> None:
        if seconds < self.short_wait:
            time.sleep(seconds)
            return
        self._call("wait", key, self._waiter.blpop, [self.wake_key(key)], timeout=seconds)

    def _release(self, grant: Grant) -> int:
        status, holder, server_us = self._script("release", grant.key, self._release_script, *self._release_call(grant))
        self._check_owned(grant, int(status), int(holder))
        return int(server_us)

    def _release_call(self, grant: Grant) -> tuple[list[str], list[Any]]:
        """The release script's keys and arguments for `grant`."""
        return [self.lock_key(grant.key), self.wake_key(grant.key)], [self._value(grant), self._signal_ms]

    def unlock_nowait(self, grant: Grant) -> None:
        """Send the release script and return without waiting for its answer. Redis runs the
        release as soon as it arrives; the answer is read before this thread's next script, when
        it has long arrived, so reading it costs no wait. Then a lost lock or a failure is logged
        and recorded as unlock() would. At most one answer is ever outstanding per thread."""
        self._check_open()
        connection = self._thread_connection()
        call = self._release_call(grant)
        try:
            self._send_script(connection, self._release_script, *call)
        except BaseException as exc:
            self._connection_failed(connection, "release", grant.key, exc)
            super().unlock_nowait(grant)  # a fresh connection, waiting for the answer this time
            return
        retried = self._forget(grant)
        self._observe_hold(grant)
        self._thread.unread = functools.partial(self._read_unread_release, _Release(grant, retried, *call))

    def _read_unread_release(self, release: _Release, connection: AbstractConnection) -> AbstractConnection:
        """Read the answer of a release sent on this connection without waiting; returns the
        connection to use next (a new one if this one failed)."""
        try:
            status, holder, _ = self._read_script_reply(connection, self._release_script, release.keys, release.args)
        except BaseException as exc:
            self._release_failed(release, self._connection_failed(connection, "release", release.grant.key, exc))
            return self._thread_connection()
        self._release_answered(release, status, holder)
        return connection

    def unlock_deferred(self, grant: Grant) -> None:
        """Keep the release until this thread's next request() and send it in the same script, or
        until flush_deferred() or any other lock call of the thread sends it. One release at most
        waits per thread: a second sends the first. The hold-time metric ends here, when the
        holder gave the lock up."""
        self._check_open()
        self.flush_deferred()  # an older deferred release, if any, goes out now
        retried = self._forget(grant)
        self._observe_hold(grant)
        self._thread.deferred = _Release(grant, retried, *self._release_call(grant), forks=base._forks)

    def flush_deferred(self) -> None:
        release = self._take_deferred()
        if release is not None:
            self._send_deferred(release, self._thread_connection())

    def _take_deferred(self) -> _Release | None:
        """The release this thread deferred, taken out of its books; None if there is none, or if
        it was deferred before a fork (the parent's release, never the child's to send)."""
        release = getattr(self._thread, "deferred", None)
        if release is None:
            return None
        self._thread.deferred = None
        return release if release.forks == base._forks else None

    def _send_deferred(self, release: _Release, connection: AbstractConnection) -> None:
        """Send a deferred release on its own; its answer is read before the thread's next script."""
        try:
            self._send_script(connection, self._release_script, release.keys, release.args)
        except BaseException as exc:
            self._release_failed(release, self._connection_failed(connection, "release", release.grant.key, exc))
            return
        self._thread.unread = functools.partial(self._read_unread_release, release)

    def _release_answered(self, release: _Release, status: Any, holder: Any) -> None:
        """Record the answer to a release sent without waiting: a lost lock is logged and recorded."""
        try:
            self._check_owned(release.grant, int(status), int(holder))
        except NotOwned as exc:
            if self._record_not_owned(release.grant, exc, release.retried):
                base.warn_unreleased(release.grant, exc)

    def _release_failed(self, release: _Release | None, failure: LockBackendUnavailable) -> None:
        """A release sent without waiting (or about to be) whose outcome is unknown: the backend
        failed. Nothing to do for no release."""
        if release is not None:
            self._record_release_failure(release.grant, failure)
            base.warn_unreleased(release.grant, failure)

    def _extend(self, grant: Grant, ttl_ms: int) -> Grant:
        sent = time.monotonic()
        status, holder = self._script("extend", grant.key, self._extend_script,
                                      [self.lock_key(grant.key)], [self._value(grant), ttl_ms])
        self._check_owned(grant, int(status), int(holder))
        return grant._replace(ttl_ms=ttl_ms, deadline=self.deadline(sent, ttl_ms))

    def _close(self) -> None:
        self.flush_deferred()  # this thread's deferred release, if any; other threads' expire with their TTL
        self._pool.disconnect()
        self._wait_pool.disconnect()
        with self._thread_connections_lock:
            connections = list(self._thread_connections)
        for connection in connections:
            connection.disconnect()

    # -- helpers --

    @staticmethod
    def _value(grant: Grant) -> str:
        return f"{grant.token}:{grant.owner}"

    @staticmethod
    def _check_owned(grant: Grant, status: int, holder: int) -> None:
        if status == 0:
            raise NotOwned(grant.key, grant.token)
        if status < 0:
            raise NotOwned(grant.key, grant.token, holder)

    def _thread_connection(self) -> AbstractConnection:
        """This thread's connection, with no answer left unread on it (an answer left by
        unlock_nowait() or request() is read first) and no release deferred (it is sent, and its
        answer read, first: request() takes a deferred release out before it gets here)."""
        local = self._thread
        connection = getattr(local, "connection", None)
        if connection is None or local.forks != base._forks:  # a forked child never reuses the parent's socket
            connection = self._pool.connection_class(**self._pool.connection_kwargs)
            local.connection, local.forks, local.unread = connection, base._forks, None
            with self._thread_connections_lock:
                self._thread_connections.add(connection)
        elif local.unread is not None:
            read, local.unread = local.unread, None
            connection = read(connection)
        release = self._take_deferred()
        if release is not None:
            self._send_deferred(release, connection)
            return self._thread_connection()
        return connection

    def _connection_failed(self, connection: AbstractConnection, operation: str, key: str,
                           exc: BaseException) -> LockBackendUnavailable:
        """After `exc` on this thread's connection: drop the connection (a reply may still be in
        flight); re-raise anything but a Redis failure, which is returned as LockBackendUnavailable."""
        self._drop_thread_connection(connection)
        if not isinstance(exc, RedisError):
            raise exc
        return self._failure(operation, key, exc)

    def _drop_thread_connection(self, connection: AbstractConnection) -> None:
        """Close this thread's connection after a failure (a reply may still be in flight)."""
        self._thread.connection, self._thread.unread = None, None
        connection.disconnect()

    def _script(self, operation: str, key: str, script: Script, keys: list[str], args: list[Any]) -> Any:
        """Run one of our scripts on this thread's connection: EVALSHA, or EVAL when the server has
        lost its script cache (a restart). Redis failures become LockBackendUnavailable; after any
        failure but a script error the connection is dropped, since a reply may still be in flight."""
        connection = self._thread_connection()
        try:
            self._send_script(connection, script, keys, args)
            return self._read_script_reply(connection, script, keys, args)
        except ResponseError as exc:
            raise LockBackendUnavailable(
                f"lock {operation} {key!r}: Redis at {self.address} refused the script: {exc}") from exc
        except BaseException as exc:
            raise self._connection_failed(connection, operation, key, exc) from exc

    @staticmethod
    def _send_script(connection: AbstractConnection, script: Script, keys: list[str], args: list[Any]) -> None:
        # Packed by hiredis directly, past redis-py's own packing layer (the bytes are the same):
        # this runs on the path of every order.
        connection.send_packed_command([pack_command(("EVALSHA", script.sha, len(keys), *keys, *args))],
                                       check_health=False)

    @staticmethod
    def _read_script_reply(connection: AbstractConnection, script: Script, keys: list[str], args: list[Any]) -> Any:
        """The reply to _send_script(); if Redis lost its script cache (a restart), the script did
        not run: send it whole (EVAL) and read that reply."""
        try:
            return connection.read_response()
        except NoScriptError:
            connection.send_command("EVAL", script.script, len(keys), *keys, *args)
            return connection.read_response()

    def _failure(self, operation: str, key: str, exc: Exception) -> LockBackendUnavailable:
        return LockBackendUnavailable(
            f"lock {operation} {key!r}: Redis at {self.address} failed: {type(exc).__name__}: {exc}")

    def _call(self, operation: str, key: str, command: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one Redis command; any Redis failure becomes LockBackendUnavailable (fail closed)."""
        try:
            return command(*args, **kwargs)
        except RedisError as exc:
            raise self._failure(operation, key, exc) from exc

