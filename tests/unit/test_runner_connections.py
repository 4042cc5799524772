"""A symbol thread keeps its database connection from tick to tick (reconnecting every tick costs
a connect and, on SQLite, a schema parse and a heap that keeps growing), while other threads keep
the configured CONN_MAX_AGE; a connection that broke is still replaced."""
import threading

import pytest
from django.db import close_old_connections, connection, connections

from trading.models import Symbol
from trading.runner import keep_connection_open

pytestmark = pytest.mark.django_db(transaction=True)


def connections_seen_over_ticks(keep: bool, ticks: int = 3) -> int:
    """Run `ticks` loop iterations (close_old_connections, then a query) in a fresh thread, as
    the bot's symbol loop does, and return how many raw connections they used."""
    seen: list[object] = []  # kept alive, so that no two can share an id
    failure: list[BaseException] = []

    def loop():
        try:
            if keep:
                keep_connection_open()
            for _ in range(ticks):
                close_old_connections()
                Symbol.objects.count()
                seen.append(connection.connection)
        except BaseException as exc:  # surfaced in the test thread below
            failure.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=loop)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return len({id(raw) for raw in seen})


def test_a_symbol_thread_reuses_one_connection_across_ticks():
    assert connections_seen_over_ticks(keep=True) == 1


def test_without_it_the_configured_max_age_reconnects_every_tick():
    # The control: with CONN_MAX_AGE 0 (the default), each tick opens a new connection.
    if connection.settings_dict["CONN_MAX_AGE"] != 0:
        pytest.skip("the suite's database is configured with persistent connections")
    assert connections_seen_over_ticks(keep=False) == 3


def test_only_the_calling_threads_wrapper_changes():
    before = dict(connection.settings_dict)
    connections_seen_over_ticks(keep=True)
    assert connection.settings_dict == before


SERVER_SIDE = {
    "postgresql": ("SELECT pg_backend_pid()", "SELECT pg_terminate_backend(%s)"),
    "mysql": ("SELECT CONNECTION_ID()", "KILL %s"),
}


def test_a_connection_the_server_dropped_is_replaced_at_the_next_tick():
    if connection.vendor not in SERVER_SIDE:
        pytest.skip(f"{connection.vendor} has no server to drop a connection")
    whoami, kill = SERVER_SIDE[connection.vendor]
    outcome: list[object] = []

    def loop():
        try:
            keep_connection_open()
            with connection.cursor() as cursor:
                cursor.execute(whoami)
                session = cursor.fetchone()[0]
            first = connection.connection
            other = connections.create_connection("default")  # the server (or an admin) ends the session
            try:
                with other.cursor() as cursor:
                    cursor.execute(kill, [session])
            finally:
                other.close()
            close_old_connections()  # between ticks, as the symbol loop does
            outcome.append(Symbol.objects.count())  # the next tick's first query
            outcome.append(connection.connection is not first)
        except BaseException as exc:
            outcome.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=loop)
    thread.start()
    thread.join()
    assert outcome == [0, True]


def test_sqlite_connections_have_a_bounded_page_cache():
    # Each symbol thread keeps its connection for the life of the bot: SQLite's default 2 MB page
    # cache per connection grew the bot by about 14 MiB over an hour with 50 symbols.
    if connection.vendor != "sqlite":
        pytest.skip(f"{connection.vendor} keeps no page cache in the client")
    from quantmesh.config import SQLITE_INIT

    with connection.cursor() as cursor:
        cursor.execute("PRAGMA cache_size")
        assert f"PRAGMA cache_size={cursor.fetchone()[0]}" == SQLITE_INIT
