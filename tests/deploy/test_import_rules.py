"""The import rules between packages (`[tool.importlinter]` in pyproject.toml) can fail.

Each case copies the four root packages and pyproject.toml to a temporary folder, adds one import
that breaks a rule, and runs `lint-imports` there: the unmodified copy passes, every changed copy
fails and names the contract and the import that broke it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("quantmesh", "trading", "locking", "reconciliation", "backtesting", "notifications")
LINT_IMPORTS = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"]


def copy_tree(dest: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def lint_imports(where: Path) -> subprocess.CompletedProcess[str]:
    # Only the copy may be found: lint-imports puts its working folder first on the path.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([*LINT_IMPORTS, "--no-cache", "--no-logo"], cwd=where, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_tree_as_it_is_keeps_every_contract(tmp_path):
    result = lint_imports(copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "added", "contract", "shown"),
    # External packages are named by their top-level package in the report.
    [
        ("locking/base.py", "import trading.runner\n", "locking is a generic lock service", "locking.base -> trading.runner"),
        # A function-level import counts as much as one at the top.
        ("locking/recorder.py", "def _later():\n    import reconciliation.services\n",
         "locking is a generic lock service", "locking.recorder -> reconciliation.services"),
        ("trading/exchange/gateway.py", "from trading import models\n", "Layers", "trading.exchange.gateway -> trading.models"),
        ("trading/services.py", "from trading import runner\n", "Layers", "trading.services -> trading.runner"),
        ("reconciliation/loop.py", "import quantmesh.urls\n", "Layers", "reconciliation.loop -> quantmesh.urls"),
        ("trading/grid.py", "import django.db\n", "Grid, PnL and margin math import no framework", "trading.grid -> django "),
        ("trading/pnl.py", "from trading import models\n", "Layers", "trading.pnl -> trading.models"),
        ("trading/simulator/matching.py", "from django.utils import timezone\n", "The simulator stands alone",
         "trading.simulator.matching -> django "),
    ],
    ids=["locking-imports-trading", "lazy-import", "exchange-imports-models", "core-imports-interface",
         "reconciliation-imports-root", "grid-imports-django", "pnl-imports-models", "simulator-imports-django"],
)
def test_an_import_against_the_rules_fails(tmp_path, module, added, contract, shown):
    tree = copy_tree(tmp_path)
    path = tree / module
    path.write_text(path.read_text() + "\n\n" + added)
    result = lint_imports(tree)
    assert result.returncode != 0, result.stdout + result.stderr
    broken = [line for line in result.stdout.splitlines() if " BROKEN" in line]
    assert any(line.startswith(contract) for line in broken), result.stdout
    assert shown in result.stdout, result.stdout
