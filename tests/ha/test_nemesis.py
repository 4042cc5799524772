"""The nemesis suite. CI runs a short set of seeds; a long soak is one command:

    QM_SOAK_RUNS=20 QM_SOAK_SECONDS=60 .venv/bin/pytest tests/ha/test_nemesis.py -k soak -s

which prints a summary table (runs, faults injected, duplicates, lost fills, longest takeover).
"""
import os

import pytest
from django.core.management import call_command

from tests.ha import nemesis

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.ha]

CI_SEEDS = [11, 23]
FREEZE_SEEDS = (5, 6, 7, 8, 9)


@pytest.mark.parametrize("seed", CI_SEEDS)
def test_nemesis_finds_no_duplicate_and_no_lost_fill(seed, tmp_path):
    report = nemesis.run(seed, duration=12, tmp_path=tmp_path)
    print("\n" + nemesis.HEADER + "\n" + report.row())
    assert sum(report.faults.values()) >= 5, report.faults
    assert report.orders > 0 and report.fills > 0
    assert report.repeated_ids == [] and report.duplicates == []
    assert report.lost_fills == []
    assert report.mismatches == [] and report.balance_mismatches == []
    assert report.stale_writes == []


def test_nemesis_on_futures_symbols(tmp_path):
    """The same faults on USDⓈ-M perpetuals: no duplicate order, the ledger equal to the exchange,
    and each position equal to the sum of its slots."""
    report = nemesis.run(31, duration=12, tmp_path=tmp_path, futures=True)
    print("\n" + nemesis.HEADER + "\n" + report.row())
    assert sum(report.faults.values()) >= 5, report.faults
    assert report.orders > 0 and report.fills > 0
    assert report.repeated_ids == [] and report.duplicates == []
    assert report.lost_fills == []
    assert report.mismatches == [] and report.balance_mismatches == []
    assert report.stale_writes == []


@pytest.mark.parametrize("unsafe", [False, True], ids=["protected", "control-unprotected"])
def test_freeze_at_the_send_point(unsafe, tmp_path):
    """Every instance freezes once right before an order send; kills restart them (and re-arm the
    freeze). Protected: clean. With fencing and the ledger guard switched off: duplicates, which
    shows the checkers can fail."""
    # Prices stand still, so the slot another instance re-placed is still open when the frozen one resumes.
    # An instance freezes at its first send after a (re)start, and whether another one takes its
    # slot over meanwhile depends on where the kills fall: a seed whose run had no such contested
    # freeze is replaced by the next one, on a fresh ledger, and the checks below apply to the
    # first run that had one (the same seeds with and without the protections).
    for seed in FREEZE_SEEDS:
        work = tmp_path / f"seed{seed}"
        work.mkdir()
        report = nemesis.run(seed, duration=12, tmp_path=work, unsafe=unsafe, mix={"kill": 1},
                             pause_at="before_send", move_prices=False)
        print("\n" + nemesis.HEADER + "\n" + report.row())
        if report.contested:
            break
        call_command("flush", interactive=False, verbosity=0)
    assert report.contested, f"no seed of {FREEZE_SEEDS} had a freeze whose slot another instance took"
    if unsafe:
        # Without the protections a stale instance's order goes out next to its successor's: the
        # checkers must flag the run (duplicate orders in most runs; always some stale write,
        # lost fill or ledger/exchange mismatch).
        assert not report.clean, "the checkers should flag a run without protections"
    else:
        assert report.clean, report


@pytest.mark.skipif("QM_SOAK_RUNS" not in os.environ, reason="long soak: set QM_SOAK_RUNS (and QM_SOAK_SECONDS)")
def test_soak(tmp_path_factory):
    runs, seconds = int(os.environ["QM_SOAK_RUNS"]), float(os.environ.get("QM_SOAK_SECONDS", "60"))
    reports = []
    for seed in range(1000, 1000 + runs):
        reports.append(nemesis.run(seed, duration=seconds, tmp_path=tmp_path_factory.mktemp(f"soak{seed}")))
        call_command("flush", interactive=False, verbosity=0)
    print("\n" + nemesis.HEADER)
    for report in reports:
        print(report.row())
    total = sum((r.faults for r in reports), start=nemesis.Counter())
    print(f"runs={runs} faults={sum(total.values())} duplicates={sum(len(r.duplicates) for r in reports)} "
          f"lost_fills={sum(len(r.lost_fills) for r in reports)} longest_takeover={max(r.longest_takeover for r in reports):.2f}s")
    assert all(r.clean for r in reports)
