#!/usr/bin/env python
"""QuantMesh command line: `python manage.py runbot | reconcile | simexchange | loadconfig | ...`."""
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantmesh.settings")
    from django.core.management import execute_from_command_line

    from quantmesh.config import SettingsError

    try:
        execute_from_command_line(sys.argv)
    except SettingsError as exc:
        # One line naming the setting, no traceback.
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
