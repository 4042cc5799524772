"""SQLite with exact decimals.

SQLite has no exact decimal type: a NUMERIC column turns '0.000000000000000001' into a float
and keeps about 15 significant digits. QuantMesh stores money with 18 places, so on SQLite a
DecimalField is stored as TEXT (the exact string) and read back as a Decimal quantized to the
field's places, the same value PostgreSQL and MySQL return. Check constraints compare through
`trading.fields.Num`, which casts on SQLite. Code never sorts or sums money in SQL.
"""
from decimal import Context, Decimal

from django.db.backends.sqlite3 import base, operations


class DatabaseOperations(operations.DatabaseOperations):
    def get_decimalfield_converter(self, expression):
        field = getattr(expression, "output_field", None)
        places = getattr(field, "decimal_places", None)
        context = Context(prec=max(getattr(field, "max_digits", 0) or 0, 28) + 2)
        quantum = Decimal(1).scaleb(-places) if places is not None else None

        def converter(value, expression, connection):
            if value is None:
                return None
            number = Decimal(value) if isinstance(value, (str, int)) else Decimal(str(value))
            return number.quantize(quantum, context=context) if quantum is not None else number

        return converter


class DatabaseWrapper(base.DatabaseWrapper):
    data_types = {**base.DatabaseWrapper.data_types, "DecimalField": "text"}
    ops_class = DatabaseOperations
