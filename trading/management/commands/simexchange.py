"""Serve the Binance-compatible exchange simulator until SIGINT/SIGTERM."""
from django.core.management.base import BaseCommand, CommandError

from trading.simulator import cli


class Command(BaseCommand):
    help = ("Serve the exchange simulator: Binance spot REST under /api/v3/..., "
            "control and ledger under /sim/...")

    def add_arguments(self, parser):
        cli.add_arguments(parser)

    def handle(self, *args, **options):
        try:
            server = cli.start_server(options)
        except cli.OptionError as exc:
            raise CommandError(str(exc)) from None

        def write(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        cli.serve(server, write)
