from django.apps import AppConfig
from django.db.models.signals import post_migrate


def use_wal_on_sqlite(sender, using="default", **kwargs) -> None:
    """SQLite in write-ahead-log mode lets the admin read while bots write. The mode is stored in
    the database file, so it is set once here rather than on every connection (switching it
    while another process has the file open fails)."""
    from django.db import connections

    connection = connections[using]
    if connection.vendor == "sqlite" and connection.settings_dict["NAME"] not in ("", ":memory:"):
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode=WAL")


class TradingConfig(AppConfig):
    name = "trading"
    verbose_name = "Trading"

    def ready(self) -> None:
        post_migrate.connect(use_wal_on_sqlite, sender=self)
