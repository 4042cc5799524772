"""Column types shared by the ledger models."""
from __future__ import annotations

from django.db import models

# Wide enough for any crypto amount or price: 18 integer digits and 18 places (wei-sized
# fractions). Exact on PostgreSQL (numeric), MySQL/MariaDB (decimal) and SQLite (text, see
# quantmesh.db.backends.sqlite3).
MONEY_DIGITS = 36
MONEY_PLACES = 18


def money(**kwargs) -> models.DecimalField:
    return models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES, **kwargs)


class Num(models.Func):
    """A money column as a number inside a check constraint.

    PostgreSQL and MySQL compare decimals natively; SQLite stores them as text, so there the
    value is cast first. Used only for sign and range checks, where a double is exact enough.
    """

    function = ""
    template = "%(expressions)s"
    output_field = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES)

    def as_sqlite(self, compiler, connection, **extra_context):
        return super().as_sql(compiler, connection, template="CAST(%(expressions)s AS REAL)", **extra_context)
