"""`manage.py loadconfig`: importing a QuantMesh config.yaml, all or nothing."""
from __future__ import annotations

from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.factories import make_account, make_symbol
from trading import configfile, configimport
from trading.configfile import ConfigError, parse_config, parse_distributed_lock, unified_symbol
from trading.models import ExchangeAccount, Symbol

pytestmark = pytest.mark.django_db

DATA = Path(__file__).resolve().parent.parent / "data"
SAMPLE = DATA / "quantmesh_config.yaml"
SECRETS = ("binance-api-key-from-the-file", "binance-secret-key-from-the-file", "lock-redis-password")


def loadconfig(path: Path | str, *args: str) -> str:
    out = StringIO()
    call_command("loadconfig", str(path), *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def refused(path: Path | str, *args: str) -> str:
    with pytest.raises(CommandError) as excinfo:
        loadconfig(path, *args)
    return str(excinfo.value)


def snapshot() -> list[tuple]:
    """Every account and symbol row, to prove a refused import changed nothing."""
    accounts = list(ExchangeAccount.objects.order_by("pk").values_list())
    symbols = list(Symbol.objects.order_by("pk").values_list())
    return accounts + symbols


def sample_with(tmp_path: Path, *replacements: tuple[str, str]) -> Path:
    """The sample file with each `old` text (found exactly once) replaced by `new`."""
    text = SAMPLE.read_text()
    for old, new in replacements:
        assert text.count(old) == 1, f"{old!r} is not once in the sample"
        text = text.replace(old, new)
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


# --- the valid sample ----------------------------------------------------------------------------

def test_the_sample_imports_exactly():
    output = loadconfig(SAMPLE)

    account = ExchangeAccount.objects.get()
    assert (account.name, account.exchange_id, account.paper) == ("binance", "binance", False)
    assert (account.api_key_env, account.api_secret_env) == ("QM_BINANCE_API_KEY", "QM_BINANCE_API_SECRET")

    btc = Symbol.objects.get(account=account, symbol="BTC/USDT")
    assert btc.price_interval == Decimal("10")
    assert btc.order_quantity == Decimal("50")
    assert btc.min_order_value == Decimal("20")
    assert (btc.buy_window_size, btc.sell_window_size) == (10, 8)
    assert (btc.reconcile_interval, btc.order_cleanup_threshold, btc.cleanup_batch_size) == (60, 50, 20)
    assert (btc.margin_lock_duration_seconds, btc.position_safety_check) == (20, 100)
    assert btc.max_grid_layers == 20
    assert btc.stop_loss_ratio == Decimal("0.15")
    assert btc.status == Symbol.Status.RUNNING and btc.anchor_price is None and btc.fence_token == 0

    eth = Symbol.objects.get(account=account, symbol="ETH/USDT")
    assert eth.price_interval == Decimal("2.3")
    assert eth.order_quantity == Decimal("30.5")
    assert eth.min_order_value == Decimal("20")  # from the legacy trading.min_order_value
    assert (eth.buy_window_size, eth.sell_window_size) == (12, 12)  # sell window defaults to the buy window
    assert (eth.reconcile_interval, eth.order_cleanup_threshold, eth.cleanup_batch_size) == (30, 50, 5)
    assert (eth.margin_lock_duration_seconds, eth.position_safety_check) == (10, 100)
    assert (eth.max_grid_layers, eth.stop_loss_ratio) == (0, Decimal("0"))  # no grid_risk_control: off
    assert Symbol.objects.count() == 2

    assert "created      BTC/USDT@binance" in output
    assert "created      ETH/USDT@binance" in output
    assert "done: 2 created, 0 updated, 0 unchanged" in output


def test_the_output_names_the_environment_and_never_shows_a_secret():
    output = loadconfig(SAMPLE)
    assert "QM_BINANCE_API_KEY" in output and "QM_BINANCE_API_SECRET" in output
    assert "QM_LOCK_BACKEND=redis" in output
    assert "REDIS_URL=redis://:****@10.0.0.5:6379/2" in output
    for secret in SECRETS:
        assert secret not in output
    assert "trading.symbols[0].total_allocated_capital" in output  # listed as ignored
    assert "trading.symbols[0].grid_risk_control.trend_filter_enabled" in output


def test_reimporting_the_same_file_changes_nothing():
    loadconfig(SAMPLE)
    before = snapshot()
    output = loadconfig(SAMPLE)
    assert snapshot() == before
    assert "unchanged    BTC/USDT@binance" in output and "unchanged    ETH/USDT@binance" in output
    assert "done: 0 created, 0 updated, 2 unchanged" in output


def test_reimport_updates_in_place_and_keeps_anchor_fence_and_status(tmp_path):
    loadconfig(SAMPLE)
    eth = Symbol.objects.get(symbol="ETH/USDT")
    Symbol.objects.filter(pk=eth.pk).update(
        anchor_price=Decimal("3000.5"), fence_token=7, status=Symbol.Status.PAUSED, tick_size=Decimal("0.01"),
    )
    changed = sample_with(tmp_path, ("price_interval: 2.3", "price_interval: 2.5"), ("buy_window_size: 12", "buy_window_size: 14"))

    output = loadconfig(changed)

    eth = Symbol.objects.get(pk=eth.pk)
    assert eth.price_interval == Decimal("2.5")
    assert (eth.buy_window_size, eth.sell_window_size) == (14, 14)
    assert eth.anchor_price == Decimal("3000.5") and eth.tick_size == Decimal("0.01")
    assert eth.fence_token == 7 and eth.status == Symbol.Status.PAUSED
    assert Symbol.objects.count() == 2
    assert "updated      ETH/USDT@binance  trading.symbols[1]: price_interval 2.3 -> 2.5, buy_window_size 12 -> 14" in output
    assert "unchanged    BTC/USDT@binance" in output
    assert "done: 0 created, 1 updated, 1 unchanged" in output


def test_dry_run_writes_nothing(tmp_path):
    output = loadconfig(SAMPLE, "--dry-run")
    assert ExchangeAccount.objects.count() == 0 and Symbol.objects.count() == 0
    assert "would create BTC/USDT@binance" in output
    assert "dry run: 2 to create, 0 to update, 0 unchanged; nothing written" in output

    loadconfig(SAMPLE)
    before = snapshot()
    output = loadconfig(sample_with(tmp_path, ("price_interval: 2.3", "price_interval: 3")), "--dry-run")
    assert snapshot() == before
    assert "would update ETH/USDT@binance  trading.symbols[1]: price_interval 2.3 -> 3" in output


def test_a_float_is_read_exactly():
    plan = parse_config(
        "trading:\n  symbols:\n    - {symbol: ETHUSDT, price_interval: 0.1, order_quantity: 20.3, buy_window_size: 3}\n"
    )
    entry = plan.symbols[0]
    assert entry.price_interval == Decimal("0.1") and entry.price_interval != Decimal(0.1)
    assert entry.order_quantity == Decimal("20.3")
    assert isinstance(entry.buy_window_size, int) and entry.buy_window_size == 3

    configimport.symbols_import(plan.symbols)
    stored = Symbol.objects.get(symbol="ETH/USDT")
    assert stored.price_interval == Decimal("0.1")
    assert stored.order_quantity == Decimal("20.3")


# --- refused files: the key is named and nothing changes -----------------------------------------

BAD_VALUES = [
    pytest.param(("price_interval: 2.3", "price_interval: -2"),
                 "trading.symbols[1].price_interval: must be greater than 0 (got -2)", id="negative-interval"),
    pytest.param(("      buy_window_size: 10", "      buy_window_size: 0"),
                 "trading.symbols[0].buy_window_size: must be at least 1 (got 0)", id="window-0"),
    pytest.param(("sell_window_size: 8", "sell_window_size: -1"),
                 "trading.symbols[0].sell_window_size: must be at least 1 (got -1)", id="sell-window-negative"),
    pytest.param(("      order_quantity: 50", "      order_quantity: 15"),
                 "trading.symbols[0].order_quantity: 15 is below min_order_value 20", id="below-min-order-value"),
    pytest.param(("buy_window_size: 12", 'buy_window_size: "ten"'),
                 "trading.symbols[1].buy_window_size: expected an integer, got 'ten'", id="wrong-type"),
    pytest.param(("reconcile_interval: 30", "reconcile_interval: 1.5"),
                 "trading.symbols[1].reconcile_interval: expected an integer, got 1.5", id="fraction-for-integer"),
    pytest.param(("      price_interval: 10", "      price_interval: [10, 20]"),
                 "trading.symbols[0].price_interval: expected a number, got a list", id="list-for-number"),
    pytest.param(("cleanup_batch_size: 5", "cleanup_batch_sise: 5"),
                 "trading.symbols[1].cleanup_batch_sise: unknown key (did you mean cleanup_batch_size?)", id="unknown-key"),
    pytest.param(('symbol: "ETHUSDT"', 'symbol: "ETHXYZ"'),
                 "trading.symbols[1].symbol: cannot split 'ETHXYZ' into base and quote", id="unsplittable-symbol"),
    pytest.param(('symbol: "ETHUSDT"', 'symbol: "BTC/USDT"'),
                 "trading.symbols[1].symbol: BTC/USDT for account binance is already at trading.symbols[0]",
                 id="duplicate-symbol"),
    pytest.param(("stop_loss_ratio: 0.15", "stop_loss_ratio: 1.5"),
                 "trading.symbols[0].grid_risk_control.stop_loss_ratio: must be below 1 (got 1.5)", id="stop-loss-ratio"),
    pytest.param(("max_grid_layers: 20", "max_grid_layrs: 20"),
                 "trading.symbols[0].grid_risk_control.max_grid_layrs: unknown key", id="unknown-risk-key"),
    pytest.param(('type: "redis"', 'type: "etcd"'),
                 "distributed_lock.type: must be 'redis', the only distributed lock backend (got 'etcd')", id="lock-type"),
    pytest.param(('addr: "10.0.0.5:6379"', 'addr: "10.0.0.5:99999"'),
                 "distributed_lock.redis.addr: the port must be 1-65535 (got 99999)", id="lock-port"),
    pytest.param(("pool_size: 10", "pool_size: many"),
                 "distributed_lock.redis.pool_size: expected an integer, got 'many'", id="lock-pool-size"),
    pytest.param(("pool_size: 10", "pool_size: 10\n    retry_interval: 5"),
                 "distributed_lock.redis.retry_interval: unknown key", id="lock-unknown-key"),
    pytest.param(('current_exchange: "binance"', 'current_exchange: "binance"\n  current_exchange: "okx"'),
                 "line 4, column 3: invalid YAML: while reading a mapping found the key 'current_exchange' twice",
                 id="repeated-key"),
]


@pytest.mark.parametrize("replacement, message", BAD_VALUES)
def test_a_bad_value_is_refused_with_its_key_and_nothing_is_written(tmp_path, replacement, message):
    make_symbol(make_account(name="existing"))
    before = snapshot()
    error = refused(sample_with(tmp_path, replacement))
    assert message in error
    assert "nothing was imported" in error
    assert snapshot() == before
    assert (ExchangeAccount.objects.count(), Symbol.objects.count()) == (1, 1)


def test_a_bad_second_symbol_stops_the_first_one_too():
    error = refused(DATA / "quantmesh_second_symbol_bad.yaml")
    assert "trading.symbols[1].price_interval: must be greater than 0 (got -2)" in error
    assert ExchangeAccount.objects.count() == 0 and Symbol.objects.count() == 0


def test_a_bad_second_symbol_does_not_half_update_existing_rows(tmp_path):
    loadconfig(SAMPLE)
    before = snapshot()
    bad = sample_with(tmp_path, ("      price_interval: 10", "      price_interval: 11"), ("price_interval: 2.3", "price_interval: 0"))
    error = refused(bad)
    assert "trading.symbols[1].price_interval: must be greater than 0 (got 0)" in error
    assert snapshot() == before
    assert Symbol.objects.get(symbol="BTC/USDT").price_interval == Decimal("10")


def test_every_problem_is_reported_at_once(tmp_path):
    bad = sample_with(
        tmp_path,
        ("      buy_window_size: 10", "      buy_window_size: 0"),
        ("price_interval: 2.3", "price_interval: -2"),
        ('type: "redis"', 'type: "etcd"'),
    )
    error = refused(bad)
    assert "3 problems; nothing was imported" in error
    assert "trading.symbols[0].buy_window_size" in error
    assert "trading.symbols[1].price_interval" in error
    assert "distributed_lock.type" in error


def test_a_yaml_syntax_error_names_the_file_line_and_column():
    path = DATA / "quantmesh_bad_syntax.yaml"
    error = refused(path)
    assert f"{path}, line 5, column 6: invalid YAML" in error
    assert Symbol.objects.count() == 0


def test_a_missing_file_is_refused(tmp_path):
    error = refused(tmp_path / "nope.yaml")
    assert "cannot read the file" in error


def test_the_model_rules_are_a_second_line_of_defence():
    plan = parse_config(SAMPLE.read_text())
    btc, eth = plan.symbols
    broken = configfile.SymbolEntry(**{**eth.__dict__, "buy_window_size": 0})  # past the file checks
    with pytest.raises(configimport.ImportRefused) as excinfo:
        configimport.symbols_import([btc, broken])
    assert "trading.symbols[1] (ETH/USDT): buy_window_size:" in str(excinfo.value)
    assert ExchangeAccount.objects.count() == 0 and Symbol.objects.count() == 0


# --- accounts ------------------------------------------------------------------------------------

def test_account_option_puts_every_symbol_into_that_account():
    output = loadconfig(SAMPLE, "--account", "desk-1")
    account = ExchangeAccount.objects.get()
    assert (account.name, account.exchange_id, account.paper) == ("desk-1", "binance", True)
    assert (account.api_key_env, account.api_secret_env) == ("", "")
    assert set(account.symbols.values_list("symbol", flat=True)) == {"BTC/USDT", "ETH/USDT"}
    assert "desk-1: created (exchange binance, paper)" in output


def test_an_existing_account_is_used_as_it_is():
    make_account(name="binance", exchange_id="binance", paper=True)
    output = loadconfig(SAMPLE)
    account = ExchangeAccount.objects.get()
    assert account.paper is True and account.api_key_env == ""
    assert account.symbols.count() == 2
    assert "binance: existing (exchange binance, paper)" in output
    assert "account binance exists and stays paper" in output


def test_a_bad_account_name_is_refused():
    error = refused(SAMPLE, "--account", "my account")
    assert "--account: 'my account' cannot name an account" in error
    assert ExchangeAccount.objects.count() == 0


def test_without_any_exchange_the_symbols_go_to_the_paper_account():
    output = loadconfig(DATA / "quantmesh_legacy.yaml")
    symbol = Symbol.objects.get()
    assert (symbol.account.name, symbol.account.exchange_id, symbol.account.paper) == ("paper", "binance", True)
    assert symbol.symbol == "SOL/USDT"
    assert symbol.price_interval == Decimal("0.5") and symbol.min_order_value == Decimal("10")
    assert (symbol.buy_window_size, symbol.sell_window_size, symbol.reconcile_interval) == (6, 6, 60)
    assert "QM_LOCK_BACKEND=nop" in output


# --- configfile on its own -----------------------------------------------------------------------

@pytest.mark.parametrize("raw, unified", [
    ("BTCUSDT", "BTC/USDT"), ("ethusdt", "ETH/USDT"), ("ETH/USDT", "ETH/USDT"), ("ETHBTC", "ETH/BTC"),
    ("BTCFDUSD", "BTC/FDUSD"), ("1INCHUSDC", "1INCH/USDC"), ("BNBTRY", "BNB/TRY"), ("SOLEUR", "SOL/EUR"),
])
def test_symbols_become_unified(raw, unified):
    errors: list[str] = []
    assert unified_symbol(raw, "s", errors) == unified and errors == []


@pytest.mark.parametrize("raw", ["FOOBAR", "USDT", "ETH/", "BTC USDT", "", 5])
def test_a_symbol_that_cannot_be_split_is_an_error_naming_it(raw):
    errors: list[str] = []
    assert unified_symbol(raw, "trading.symbols[0].symbol", errors) is None
    assert len(errors) == 1 and errors[0].startswith("trading.symbols[0].symbol: ")


def test_missing_values_fall_back_to_legacy_fields_then_to_the_defaults():
    plan = parse_config(
        "trading:\n"
        "  order_quantity: 40\n"
        "  reconcile_interval: 90\n"
        "  symbols:\n"
        "    - {symbol: BTCUSDT, price_interval: 5, buy_window_size: 4}\n"
    )
    entry = plan.symbols[0]
    assert entry.order_quantity == Decimal("40") and entry.reconcile_interval == 90  # legacy trading.*
    assert entry.min_order_value == Decimal("20")  # QuantMesh defaults
    assert entry.sell_window_size == 4
    assert (entry.order_cleanup_threshold, entry.cleanup_batch_size) == (50, 10)
    assert (entry.margin_lock_duration_seconds, entry.position_safety_check) == (10, 100)
    assert (entry.max_grid_layers, entry.stop_loss_ratio) == (0, Decimal("0"))
    assert entry.account.name == "paper"


def test_a_bad_legacy_fallback_is_named_where_it_is():
    with pytest.raises(ConfigError) as excinfo:
        parse_config("trading:\n  price_interval: -1\n  symbols:\n    - {symbol: BTCUSDT, order_quantity: 30, buy_window_size: 4}\n")
    assert excinfo.value.errors == ["trading.price_interval: must be greater than 0 (got -1)"]


def test_required_keys_are_named():
    with pytest.raises(ConfigError) as excinfo:
        parse_config("trading:\n  symbols:\n    - {symbol: BTCUSDT}\n")
    assert excinfo.value.errors == [
        "trading.symbols[0].price_interval: is required",
        "trading.symbols[0].order_quantity: is required",
        "trading.symbols[0].buy_window_size: is required",
    ]


def test_an_empty_symbol_list_without_a_legacy_symbol_is_an_error():
    with pytest.raises(ConfigError) as excinfo:
        parse_config("trading:\n  symbols: []\n")
    assert "trading.symbols: no symbols to import" in excinfo.value.errors[0]


def test_the_per_symbol_grid_risk_control_wins_over_the_global_one():
    plan = parse_config(
        "trading:\n"
        "  grid_risk_control: {enabled: true, max_grid_layers: 5, stop_loss_ratio: 0.2}\n"
        "  symbols:\n"
        "    - {symbol: BTCUSDT, price_interval: 5, order_quantity: 30, buy_window_size: 4,\n"
        "       grid_risk_control: {enabled: true, max_grid_layers: 9, stop_loss_ratio: 0.05}}\n"
        "    - {symbol: ETHUSDT, price_interval: 1, order_quantity: 30, buy_window_size: 4}\n"
        "    - {symbol: SOLUSDT, price_interval: 1, order_quantity: 30, buy_window_size: 4,\n"
        "       grid_risk_control: {enabled: false, max_grid_layers: 3}}\n"
    )
    btc, eth, sol = plan.symbols
    assert (btc.max_grid_layers, btc.stop_loss_ratio) == (9, Decimal("0.05"))
    assert (eth.max_grid_layers, eth.stop_loss_ratio) == (5, Decimal("0.2"))
    assert (sol.max_grid_layers, sol.stop_loss_ratio) == (0, Decimal("0"))
    assert "trading.symbols[2].grid_risk_control.max_grid_layers (grid_risk_control is disabled)" in plan.ignored


def test_parse_distributed_lock():
    block = {"enabled": True, "type": "redis", "prefix": "qm:", "default_ttl": 5,
             "redis": {"addr": "redis.local:6380", "password": "p@ss word", "db": 3, "pool_size": 20}}
    assert parse_distributed_lock(block) == ("redis", "redis://:p%40ss%20word@redis.local:6380/3", "qm:")
    assert parse_distributed_lock({"enabled": True}) == ("redis", "redis://localhost:6379/0", "quantmesh:lock:")
    assert parse_distributed_lock({"enabled": False, "redis": {"addr": "x:1"}}) == ("nop", None, "quantmesh:lock:")
    assert parse_distributed_lock(None) == ("nop", None, "quantmesh:lock:")
    assert parse_distributed_lock({}) == ("nop", None, "quantmesh:lock:")
    assert parse_distributed_lock({"enabled": True, "redis": {"addr": "[::1]:6379"}})[1] == "redis://[::1]:6379/0"
    assert configfile.mask_redis_url("redis://:p%40ss@h:1/0") == "redis://:****@h:1/0"


def test_parse_distributed_lock_names_every_bad_key():
    block = {"enabled": "yes please", "type": "etcd", "ttl": 5, "redis": {"addr": "a b", "db": -1, "password": 12}}
    with pytest.raises(ConfigError) as excinfo:
        parse_distributed_lock(block)
    errors = excinfo.value.errors
    assert "distributed_lock.ttl: unknown key" in errors[0]
    assert "distributed_lock.enabled: expected true or false, got 'yes please'" in errors
    assert "distributed_lock.type: must be 'redis', the only distributed lock backend (got 'etcd')" in errors
    assert "distributed_lock.redis.addr: expected host:port, got 'a b'" in errors
    assert "distributed_lock.redis.db: must not be negative (got -1)" in errors
    assert "distributed_lock.redis.password: expected a string" in errors


def test_the_lock_password_survives_the_url_round_trip():
    from redis.connection import parse_url

    _, url, _ = parse_distributed_lock({"enabled": True, "redis": {"addr": "10.0.0.5:6380", "password": "p@ss:w/rd"}})
    assert url == "redis://:p%40ss%3Aw%2Frd@10.0.0.5:6380/0"
    assert parse_url(url)["password"] == "p@ss:w/rd"


@pytest.mark.parametrize("addr, url", [
    ("127.0.0.1", "redis://127.0.0.1:6379/0"),
    ("[::1]:6390", "redis://[::1]:6390/0"),
    ("redis.internal:7000", "redis://redis.internal:7000/0"),
])
def test_lock_addresses(addr, url):
    assert parse_distributed_lock({"enabled": True, "redis": {"addr": addr}})[1] == url


@pytest.mark.parametrize("block, error", [
    ({"enabled": "yes"}, "distributed_lock.enabled: expected true or false, got 'yes'"),
    ({"enabled": False, "type": "etcd"},
     "distributed_lock.type: must be 'redis', the only distributed lock backend (got 'etcd')"),
    ({"enabled": True, "type": ""}, "distributed_lock.type: expected a non-empty string, got ''"),
    ({"prefix": ""}, "distributed_lock.prefix: expected a non-empty string, got ''"),
    ({"default_ttl": 0}, "distributed_lock.default_ttl: must be at least 1 (got 0)"),
    ({"default_ttl": "soon"}, "distributed_lock.default_ttl: expected an integer, got 'soon'"),
    ({"default_ttl": Decimal("2.5")}, "distributed_lock.default_ttl: expected an integer, got 2.5"),
    ({"redis": "localhost"}, "distributed_lock.redis: expected a mapping, got 'localhost'"),
    ({"redis": {"addr": "localhost:http"}}, "distributed_lock.redis.addr: expected host:port, got 'localhost:http'"),
    ({"redis": {"addr": "localhost:70000"}}, "distributed_lock.redis.addr: the port must be 1-65535 (got 70000)"),
    ({"redis": {"addr": ""}}, "distributed_lock.redis.addr: expected a non-empty string, got ''"),
    ({"redis": {"db": "0"}}, "distributed_lock.redis.db: expected an integer, got '0'"),
    ({"redis": {"pool_size": 0}}, "distributed_lock.redis.pool_size: must be at least 1 (got 0)"),
    ("enabled", "distributed_lock: expected a mapping, got 'enabled'"),
])
def test_a_bad_lock_value_is_named(block, error):
    with pytest.raises(ConfigError) as excinfo:
        parse_distributed_lock(block)
    assert excinfo.value.errors == [error]


def test_unknown_lock_keys_are_errors_naming_the_key():
    block = {"enabled": False, "fallback_mode": "nop", "prefx": "qm:",
             "redis": {"addr": "localhost:6379", "retry_interval": 5}}
    with pytest.raises(ConfigError) as excinfo:
        parse_distributed_lock(block)
    assert excinfo.value.errors == [
        "distributed_lock.fallback_mode: unknown key",
        "distributed_lock.prefx: unknown key (did you mean prefix?)",
        "distributed_lock.redis.retry_interval: unknown key",
    ]


def test_unknown_trading_level_keys_are_reported_not_silent():
    plan = parse_config("trading:\n  symbol: BTCUSDT\n  price_interval: 5\n  order_quantity: 30\n"
                        "  buy_window_size: 4\n  sell_windows_size: 3\n")
    assert plan.symbols[0].sell_window_size == 4
    assert any(note.startswith("trading.sell_windows_size: unknown key, ignored (did you mean sell_window_size?)")
               for note in plan.notes)


# --- futures -------------------------------------------------------------------------------------
FUTURES = DATA / "quantmesh_futures.yaml"


def test_a_go_futures_config_becomes_a_futures_account_with_its_leverage():
    output = loadconfig(FUTURES)
    account = ExchangeAccount.objects.get(name="binance")
    symbol = Symbol.objects.get(account=account)
    assert (account.market_type, account.exchange_id, account.paper) == ("usdm", "binance", False)
    assert (symbol.symbol, symbol.leverage, symbol.max_leverage) == ("BTC/USDT", 5, 8)
    assert "imported as USDⓈ-M perpetual futures" in output and "risk_control.max_leverage" in output
    assert "exchange binance, USDⓈ-M futures, live" in output
    assert "leverage 5x, max leverage 8x" in output
    assert "exchanges.binance.leverage: 5x is set on the exchange before trading" in output
    assert "risk_control.monitor_symbols" in output  # listed as ignored
    assert "not imported (other blocks of the file): system" in output


def test_market_spot_imports_a_futures_file_as_spot_and_says_what_it_ignores():
    output = loadconfig(FUTURES, "--market", "spot")
    symbol = Symbol.objects.get()
    assert (symbol.account.market_type, symbol.leverage, symbol.max_leverage) == ("spot", None, 10)
    assert "exchanges.binance.leverage (spot symbols)" in output
    assert "imported as USDⓈ-M" not in output


def test_a_plain_config_stays_spot_unless_told_otherwise(tmp_path):
    loadconfig(SAMPLE)
    assert set(ExchangeAccount.objects.values_list("market_type", flat=True)) == {"spot"}
    plan = configfile.load_config(SAMPLE, market="usdm")
    assert {e.account.market_type for e in plan.symbols} == {"usdm"}
    assert {(e.leverage, e.max_leverage) for e in plan.symbols} == {(None, 10)}


@pytest.mark.parametrize("old, new, message", [
    ("    leverage: 5", "    leverage: 9", "exchanges.binance.leverage: 9 is above the maximum leverage 8"),
    ("    leverage: 5", "    leverage: 0", "exchanges.binance.leverage: must be from 1 to 125 (got 0)"),
    ("  max_leverage: 8", "  max_leverage: 200", "risk_control.max_leverage: must be from 0 to 125 (got 200)"),
])
def test_bad_futures_values_are_refused_by_name(tmp_path, old, new, message):
    path = tmp_path / "futures.yaml"
    text = FUTURES.read_text()
    assert text.count(old) == 1
    path.write_text(text.replace(old, new))
    assert message in refused(path)
    assert not Symbol.objects.exists()


def test_max_leverage_zero_means_ten_as_in_the_go_quantmesh(tmp_path):
    path = tmp_path / "futures.yaml"
    path.write_text(FUTURES.read_text().replace("  max_leverage: 8", "  max_leverage: 0"))
    output = loadconfig(path)
    assert Symbol.objects.get().max_leverage == 10
    assert "risk_control.max_leverage: 0 means 10" in output


def test_futures_symbols_are_refused_into_an_existing_spot_account():
    make_account(name="binance", exchange_id="binance", paper=False)
    message = refused(FUTURES)
    assert "account binance exists for spot, but trading.symbols[0] is imported as usdm" in message
    assert not Symbol.objects.exists()


def test_an_unknown_market_is_refused():
    with pytest.raises(CommandError, match="invalid choice"):
        loadconfig(FUTURES, "--market", "coinm")
