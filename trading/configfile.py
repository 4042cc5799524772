"""Reading a QuantMesh `config.yaml`: YAML text to validated, typed values. No database access.

`load_config(path)` (or `parse_config(text)`) returns a `ConfigPlan`: one `SymbolEntry` per
symbol to import, each with the `AccountSpec` of the account it belongs to, the parsed
`distributed_lock` block and the keys that are known to QuantMesh but not used here. Every
problem found is collected and raised together as one `ConfigError` whose lines name the key
path (`trading.symbols[1].price_interval: must be greater than 0 (got -2)`).

Numbers are exact: the YAML loader builds `Decimal` from the scalar's text, so `0.1` is
`Decimal("0.1")`, never the binary value of a float.
"""
from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import quote

import yaml

from trading.fields import MONEY_DIGITS, MONEY_PLACES

# Quote assets used to split exchange market ids such as ETHUSDT. Longer names are tried
# first, so BTCFDUSD is BTC/FDUSD and not BTCFD/USD.
QUOTE_ASSETS = (
    "USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USDP", "DAI", "USD",
    "BTC", "ETH", "BNB", "EUR", "TRY", "GBP", "BRL", "JPY", "AUD",
)
_QUOTES_LONGEST_FIRST = sorted(QUOTE_ASSETS, key=len, reverse=True)

PAPER_ACCOUNT = "paper"
PAPER_EXCHANGE_ID = "binance"  # the built-in simulator speaks Binance spot
DEFAULT_LOCK_PREFIX = "quantmesh:lock:"
MAX_INT = 2147483647  # the largest value a PositiveIntegerField holds on every engine

# Keys QuantMesh knows that this project does not use: accepted and listed as ignored.
IGNORED_SYMBOL_KEYS = frozenset({"total_allocated_capital", "strategies", "withdrawal_policy"})
IGNORED_TRADING_KEYS = IGNORED_SYMBOL_KEYS | {"dynamic_adjustment", "smart_position", "position_allocation"}
IGNORED_RISK_KEYS = frozenset({"take_profit_trigger_ratio", "trailing_take_profit_ratio", "trend_filter_enabled"})
LOCK_KEYS = frozenset({"enabled", "type", "prefix", "default_ttl", "redis"})
LOCK_REDIS_KEYS = frozenset({"addr", "password", "db", "pool_size"})

_ACCOUNT_NAME = re.compile(r"^[-a-zA-Z0-9_]{1,64}$")


class ConfigError(Exception):
    """The file cannot be imported. `errors` holds one line per problem, each naming its key."""

    def __init__(self, errors: list[str], *, source: str = "") -> None:
        self.errors = list(dict.fromkeys(errors))  # in order, without repeats
        self.source = source
        count = len(self.errors)
        head = f"{source}: " if source else ""
        super().__init__(f"{head}{count} error{'s' if count != 1 else ''}:\n" + "\n".join(f"  {e}" for e in self.errors))


# --- YAML ----------------------------------------------------------------------------------------

class _Loader(yaml.SafeLoader):
    """Safe YAML with exact decimals and no silently repeated keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"found the key {key_node.value!r} twice",
                    key_node.start_mark,
                )
            seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def _construct_decimal(loader: _Loader, node: yaml.ScalarNode) -> Decimal:
    text = str(loader.construct_scalar(node)).replace("_", "")
    special = {".inf": "Infinity", "+.inf": "Infinity", "-.inf": "-Infinity", ".nan": "NaN"}
    text = special.get(text.lower(), text)
    try:
        return Decimal(text)
    except InvalidOperation:  # sexagesimal (1:30.5) and other rare YAML 1.1 spellings
        return Decimal(repr(yaml.SafeLoader.construct_yaml_float(loader, node)))


_Loader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)


def load_yaml(text: str, *, source: str = "<config>") -> Any:
    """Parse YAML text with floats read as Decimal. A syntax error becomes a ConfigError
    naming the file, line and column."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}, line {mark.line + 1}, column {mark.column + 1}" if mark else source
        problem = " ".join(part for part in (exc.context, exc.problem) if part)
        raise ConfigError([f"{where}: invalid YAML: {problem}"], source=source) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: YAML error: {exc}"], source=source) from None


# --- the result ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class AccountSpec:
    """The exchange account a symbol goes to, and how to create it if it does not exist."""

    name: str
    exchange_id: str
    paper: bool
    api_key_env: str = ""
    api_secret_env: str = ""
    named_by: str = ""  # where the name came from: "--account", a key path or "default"
    market_type: str = "spot"  # or "usdm": USDⓈ-M perpetual futures


@dataclass(frozen=True)
class SymbolEntry:
    """One symbol, ready for the `Symbol` model. `path` is where it came from in the file."""

    path: str
    symbol: str
    account: AccountSpec
    exchange: str | None  # the QuantMesh exchange name, if the file gave one
    price_interval: Decimal
    order_quantity: Decimal
    min_order_value: Decimal
    buy_window_size: int
    sell_window_size: int
    reconcile_interval: int
    order_cleanup_threshold: int
    cleanup_batch_size: int
    margin_lock_duration_seconds: int
    position_safety_check: int
    max_grid_layers: int
    stop_loss_ratio: Decimal
    leverage: int | None = None  # futures: set on the exchange before trading (None: keep the exchange's)
    max_leverage: int = 10  # futures: refuse to trade above it

    def model_fields(self) -> dict[str, Decimal | int]:
        """The `Symbol` model fields this entry sets (names as on the model)."""
        return {name: getattr(self, name) for name in SYMBOL_MODEL_FIELDS}


SYMBOL_MODEL_FIELDS = (
    "price_interval", "order_quantity", "min_order_value", "buy_window_size", "sell_window_size",
    "reconcile_interval", "order_cleanup_threshold", "cleanup_batch_size", "margin_lock_duration_seconds",
    "position_safety_check", "max_grid_layers", "stop_loss_ratio", "leverage", "max_leverage",
)
MARKETS = ("auto", "spot", "usdm")
GO_DEFAULT_MAX_LEVERAGE = 10  # the Go QuantMesh's risk_control.max_leverage default (0 means it too)


@dataclass(frozen=True)
class LockConfig:
    """What a `distributed_lock` block means here. `redis_url` may hold a password."""

    backend: str  # "nop" or "redis"
    redis_url: str | None = field(default=None, repr=False)
    namespace: str = DEFAULT_LOCK_PREFIX
    present: bool = True  # False: the file has no distributed_lock block

    @property
    def masked_url(self) -> str | None:
        return mask_redis_url(self.redis_url) if self.redis_url else None


@dataclass(frozen=True)
class ConfigPlan:
    source: str
    symbols: tuple[SymbolEntry, ...]
    lock: LockConfig
    ignored: tuple[str, ...] = ()  # key paths accepted but not used
    notes: tuple[str, ...] = ()  # things worth saying that are not errors


# --- values --------------------------------------------------------------------------------------

def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else str(value)
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _decimal(value: Any, path: str, errors: list[str]) -> Decimal | None:
    """An exact Decimal from a YAML number (or a quoted decimal numeral)."""
    if isinstance(value, bool):
        result = None
    elif isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*", value):
        result = Decimal(value.strip())
    else:
        result = None
    if result is None:
        errors.append(f"{path}: expected a number, got {_show(value)}")
        return None
    if not result.is_finite():
        errors.append(f"{path}: expected a finite number, got {_show(value)}")
        return None
    if _places(result) > MONEY_PLACES:
        result = result.normalize()  # 0.10000000000000000000 is 0.1
        if _places(result) > MONEY_PLACES:
            errors.append(f"{path}: at most {MONEY_PLACES} decimal places (got {_show(result)})")
            return None
    if result.adjusted() >= MONEY_DIGITS - MONEY_PLACES:
        errors.append(f"{path}: at most {MONEY_DIGITS - MONEY_PLACES} digits before the point (got {_show(result)})")
        return None
    return result


def _places(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _integer(value: Any, path: str, errors: list[str]) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        errors.append(f"{path}: expected an integer, got {_show(value)}")
        return None
    if value > MAX_INT:
        errors.append(f"{path}: must be at most {MAX_INT} (got {value})")
        return None
    return value


def _boolean(value: Any, path: str, errors: list[str]) -> bool | None:
    if not isinstance(value, bool):
        errors.append(f"{path}: expected true or false, got {_show(value)}")
        return None
    return value


def _text(value: Any, path: str, errors: list[str]) -> str | None:
    if not isinstance(value, str) or not value.strip():
        errors.append(f"{path}: expected a non-empty string, got {_show(value)}")
        return None
    return value.strip()


Check = Callable[[Any], str | None]


def greater_than_zero(value: Decimal | int) -> str | None:
    return None if value > 0 else f"must be greater than 0 (got {_show(value)})"


def not_negative(value: Decimal | int) -> str | None:
    return None if value >= 0 else f"must not be negative (got {_show(value)})"


def at_least(minimum: int) -> Check:
    def check(value: int) -> str | None:
        return None if value >= minimum else f"must be at least {minimum} (got {value})"
    return check


def below_one(value: Decimal) -> str | None:
    if value < 0:
        return f"must not be negative (got {_show(value)})"
    return None if value < 1 else f"must be below 1 (got {_show(value)})"


_REQUIRED = object()
_SAME_AS_BUY = object()

# key: (reader, default, check). Defaults are those of QuantMesh (config.go).
SYMBOL_KEYS: dict[str, tuple[Callable[[Any, str, list[str]], Any], Any, Check]] = {
    "price_interval": (_decimal, _REQUIRED, greater_than_zero),
    "order_quantity": (_decimal, _REQUIRED, greater_than_zero),
    "min_order_value": (_decimal, Decimal("20"), not_negative),
    "buy_window_size": (_integer, _REQUIRED, at_least(1)),
    "sell_window_size": (_integer, _SAME_AS_BUY, at_least(1)),
    "reconcile_interval": (_integer, 60, at_least(1)),
    "order_cleanup_threshold": (_integer, 50, at_least(1)),
    "cleanup_batch_size": (_integer, 10, at_least(1)),
    "margin_lock_duration_seconds": (_integer, 10, not_negative),
    "position_safety_check": (_integer, 100, not_negative),
}
ENTRY_KEYS = frozenset(SYMBOL_KEYS) | {"symbol", "exchange", "grid_risk_control"}
TRADING_KEYS = ENTRY_KEYS | {"symbols"}
RISK_KEYS = frozenset({"enabled", "max_grid_layers", "stop_loss_ratio"})


def unified_symbol(raw: Any, path: str, errors: list[str]) -> str | None:
    """`ETHUSDT`, `ethusdt` or `ETH/USDT` -> `ETH/USDT`; an error naming the symbol otherwise."""
    if not isinstance(raw, str) or not raw.strip():
        errors.append(f"{path}: expected a symbol such as BTCUSDT or BTC/USDT, got {_show(raw)}")
        return None
    text = raw.strip().upper()
    if "/" in text:
        base, _, quote_asset = text.partition("/")
        if re.fullmatch(r"[A-Z0-9]+", base) and re.fullmatch(r"[A-Z0-9]+", quote_asset):
            return _fits_symbol(f"{base}/{quote_asset}", raw, path, errors)
        errors.append(f"{path}: {raw!r} is not a symbol of the form BASE/QUOTE")
        return None
    if re.fullmatch(r"[A-Z0-9]+", text):
        for quote_asset in _QUOTES_LONGEST_FIRST:
            if text.endswith(quote_asset) and len(text) > len(quote_asset):
                return _fits_symbol(f"{text[: -len(quote_asset)]}/{quote_asset}", raw, path, errors)
    errors.append(
        f"{path}: cannot split {raw!r} into base and quote (known quote assets: {', '.join(QUOTE_ASSETS)}); "
        f"write it as BASE/QUOTE"
    )
    return None


def _fits_symbol(symbol: str, raw: str, path: str, errors: list[str]) -> str | None:
    if len(symbol) > 32:
        errors.append(f"{path}: {raw!r} is longer than 32 characters")
        return None
    return symbol


def _checked(reader, check, value, where: str, errors: list[str]):
    """`value` read by `reader` and passed by `check` (which returns a problem or ""); None, with
    the problem added to `errors`, when either refuses it."""
    parsed = reader(value, where, errors)
    if parsed is None:
        return None
    problem = check(parsed)
    if problem:
        errors.append(f"{where}: {problem}")
        return None
    return parsed


def _close_match(key: str, known: frozenset[str]) -> str:
    match = difflib.get_close_matches(key, sorted(known), n=1)
    return f" (did you mean {match[0]}?)" if match else ""


def _mapping(value: Any, path: str, errors: list[str]) -> Mapping | None:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        errors.append(f"{path}: expected a mapping, got {_show(value)}")
        return None
    return value


# --- distributed_lock ----------------------------------------------------------------------------

def parse_distributed_lock(block: Any, *, where: str = "distributed_lock") -> tuple[str, str | None, str]:
    """(backend, redis_url, namespace) for a QuantMesh `distributed_lock` block:

        distributed_lock:
          enabled: true
          type: redis
          prefix: "quantmesh:lock:"
          default_ttl: 5
          redis: {addr: "localhost:6379", password: "", db: 0, pool_size: 10}

    backend is "nop" (disabled or absent: a single instance) or "redis"; redis_url is None for
    "nop" and may hold the password. The three are what `locking.build_lock_service(backend,
    redis_url, namespace=namespace)` takes. Raises ConfigError listing every bad value and every
    unknown key, each with its key path."""
    errors: list[str] = []
    lock = _parse_lock(block, where, errors)
    if errors or lock is None:
        raise ConfigError(errors)
    return lock.backend, lock.redis_url, lock.namespace


def _parse_lock(block: Any, where: str, errors: list[str]) -> LockConfig | None:
    if block is None:
        return LockConfig(backend="nop", present=False)
    start = len(errors)
    block = _mapping(block, where, errors)
    if block is None:
        return None
    for key in block:
        if key not in LOCK_KEYS:
            errors.append(f"{where}.{key}: unknown key{_close_match(str(key), LOCK_KEYS)}")

    enabled = _boolean(block.get("enabled", False), f"{where}.enabled", errors)
    kind = _text(block.get("type", "redis"), f"{where}.type", errors)
    if kind is not None and kind.lower() != "redis":
        errors.append(f"{where}.type: must be 'redis', the only distributed lock backend (got {kind!r})")
    prefix = block.get("prefix", DEFAULT_LOCK_PREFIX)
    if not isinstance(prefix, str) or not prefix:
        errors.append(f"{where}.prefix: expected a non-empty string, got {_show(prefix)}")
    ttl = _integer(block.get("default_ttl", 5), f"{where}.default_ttl", errors)
    if ttl is not None and ttl < 1:
        errors.append(f"{where}.default_ttl: must be at least 1 (got {ttl})")

    redis_block = _mapping(block.get("redis"), f"{where}.redis", errors) or {}
    for key in redis_block:
        if key not in LOCK_REDIS_KEYS:
            errors.append(f"{where}.redis.{key}: unknown key{_close_match(str(key), LOCK_REDIS_KEYS)}")
    address = _redis_address(redis_block.get("addr", "localhost:6379"), f"{where}.redis.addr", errors)
    password = redis_block.get("password", "")
    if password is None:
        password = ""
    if not isinstance(password, str):
        errors.append(f"{where}.redis.password: expected a string")  # the value is never shown
    db = _integer(redis_block.get("db", 0), f"{where}.redis.db", errors)
    if db is not None and db < 0:
        errors.append(f"{where}.redis.db: must not be negative (got {db})")
    pool = _integer(redis_block.get("pool_size", 10), f"{where}.redis.pool_size", errors)
    if pool is not None and pool < 1:
        errors.append(f"{where}.redis.pool_size: must be at least 1 (got {pool})")

    if len(errors) > start:
        return None
    if not enabled:
        return LockConfig(backend="nop", namespace=prefix)
    auth = f":{quote(password, safe='')}@" if password else ""
    return LockConfig(backend="redis", redis_url=f"redis://{auth}{address}/{db}", namespace=prefix)


def _redis_address(addr: Any, path: str, errors: list[str]) -> str | None:
    """`host:port` (or `[v6]:port`; the port defaults to 6379) as it goes into a URL."""
    text = _text(addr, path, errors)
    if text is None:
        return None
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([^\s:/@\[\]]+)(?::(\d+))?", text)
    if not match:
        errors.append(f"{path}: expected host:port, got {text!r}")
        return None
    host = f"[{match.group(1)}]" if match.group(1) else match.group(3)
    port = int(match.group(2) or match.group(4) or 6379)
    if not 0 < port < 65536:
        errors.append(f"{path}: the port must be 1-65535 (got {port})")
        return None
    return f"{host}:{port}"


def mask_redis_url(url: str) -> str:
    """The URL with any password replaced by ****."""
    return re.sub(r"^(rediss?://)([^@/]*)@", lambda m: f"{m.group(1)}{_mask_userinfo(m.group(2))}@", url)


def _mask_userinfo(userinfo: str) -> str:
    user, sep, _ = userinfo.partition(":")
    return f"{user}:****" if sep else "****"


# --- accounts ------------------------------------------------------------------------------------

def secret_env_names(account: str) -> tuple[str, str]:
    """The environment variables that hold an account's API key and secret."""
    stem = re.sub(r"[^A-Z0-9]", "_", account.upper())
    return f"QM_{stem}_API_KEY", f"QM_{stem}_API_SECRET"


@functools.cache
def _ccxt_ids() -> frozenset[str]:
    import ccxt

    return frozenset(ccxt.exchanges)


def _has_credentials(exchanges: Mapping, name: str) -> bool:
    block = exchanges.get(name)
    if not isinstance(block, Mapping):
        return False
    values = (block.get(k) for k in ("api_key", "secret_key"))
    return any(isinstance(value, str) and value.strip() for value in values)


def _account_spec(
    name: str, named_by: str, exchange: str | None, exchanges: Mapping, errors: list[str], market_type: str = "spot"
) -> AccountSpec | None:
    if not _ACCOUNT_NAME.fullmatch(name):
        errors.append(f"{named_by}: {name!r} cannot name an account (1-64 letters, digits, - or _)")
        return None
    paper = not _has_credentials(exchanges, name)
    ccxt_ids = _ccxt_ids()
    if name in ccxt_ids:
        exchange_id = name
    elif exchange in ccxt_ids:
        exchange_id = exchange
    elif paper:
        exchange_id = PAPER_EXCHANGE_ID
    else:
        errors.append(f"exchanges.{name}: {name!r} is not a ccxt exchange id, so the account's exchange is unknown")
        return None
    key_env, secret_env = ("", "") if paper else secret_env_names(name)
    return AccountSpec(name=name, exchange_id=exchange_id, paper=paper, api_key_env=key_env,
                       api_secret_env=secret_env, named_by=named_by, market_type=market_type)


def _market_type(data: Mapping, exchanges: Mapping, market: str, notes: list[str]) -> str:
    """spot or usdm for every account of the file. With `auto`, a file that sets the Go
    QuantMesh's futures keys (risk_control.max_leverage, exchanges.<name>.leverage) is futures,
    which is what the Go QuantMesh trades; anything else is spot."""
    if market not in MARKETS:
        raise ConfigError([f"--market: {market!r} is not one of {', '.join(MARKETS)}"])
    if market != "auto":
        return market
    risk = data.get("risk_control")
    reasons = ["risk_control.max_leverage"] if isinstance(risk, Mapping) and "max_leverage" in risk else []
    reasons += [f"exchanges.{name}.leverage" for name, block in exchanges.items()
                if isinstance(block, Mapping) and "leverage" in block]
    if not reasons:
        return "spot"
    notes.append(f"imported as USDⓈ-M perpetual futures, the Go QuantMesh's market, because the file sets "
                 f"{', '.join(reasons)} (--market spot imports the symbols as spot)")
    return "usdm"


def _futures_limits(data: Mapping, exchanges: Mapping, exchange: str | None, market_type: str, errors: list[str],
                    ignored: list[str], notes: list[str]) -> tuple[int | None, int]:
    """(leverage, max_leverage) of an account's symbols: leverage from exchanges.<exchange>.leverage,
    max_leverage from risk_control.max_leverage (0 or absent: 10, as in the Go QuantMesh)."""
    block = exchanges.get(exchange) if exchange else None
    raw_leverage = block.get("leverage") if isinstance(block, Mapping) else None
    risk = data.get("risk_control")
    raw_max = risk.get("max_leverage") if isinstance(risk, Mapping) else None
    if market_type != "usdm":
        if raw_leverage is not None:
            ignored.append(f"exchanges.{exchange}.leverage (spot symbols)")
        return None, GO_DEFAULT_MAX_LEVERAGE
    maximum = GO_DEFAULT_MAX_LEVERAGE
    if raw_max is not None:
        parsed = _checked(_integer, _leverage_range(allow_zero=True), raw_max, "risk_control.max_leverage", errors)
        if parsed == 0:
            notes.append("risk_control.max_leverage: 0 means 10, as in the Go QuantMesh")
        elif parsed is not None:
            maximum = parsed
    leverage = None
    if raw_leverage is not None:
        where = f"exchanges.{exchange}.leverage"
        leverage = _checked(_integer, _leverage_range(allow_zero=False), raw_leverage, where, errors)
        if leverage is not None and leverage > maximum:
            errors.append(f"{where}: {leverage} is above the maximum leverage {maximum} (risk_control.max_leverage)")
            leverage = None
        elif leverage is not None:
            notes.append(f"{where}: {leverage}x is set on the exchange before trading (the Go QuantMesh left "
                         "Binance's leverage as it was)")
    return leverage, maximum


def _leverage_range(*, allow_zero: bool) -> Check:
    def check(value: int) -> str | None:
        low = 0 if allow_zero else 1
        return None if low <= value <= 125 else f"must be from {low} to 125 (got {value})"
    return check


# --- the whole file ------------------------------------------------------------------------------

def load_config(path: str | Path, *, account: str | None = None, market: str = "auto") -> ConfigPlan:
    """Read and check a QuantMesh config file. Raises ConfigError listing every problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{source}: cannot read the file: {exc}"], source=source) from None
    return parse_config(text, source=source, account=account, market=market)


def parse_config(text: str, *, source: str = "<config>", account: str | None = None, market: str = "auto") -> ConfigPlan:
    """Check QuantMesh config text. `account` puts every symbol into that account (the
    `--account` option); otherwise each symbol goes to its `exchange`, `app.current_exchange`
    or the paper account. `market` (auto, spot or usdm) says whether the symbols are spot or
    USDⓈ-M futures; auto decides by the Go QuantMesh's futures keys (see `_market_type`)."""
    data = load_yaml(text, source=source)
    errors: list[str] = []
    ignored: list[str] = []
    notes: list[str] = []
    if data is None:
        raise ConfigError([f"{source}: the file is empty"], source=source)
    if not isinstance(data, Mapping):
        raise ConfigError([f"{source}: expected a mapping at the top, got {_show(data)}"], source=source)

    app = _mapping(data.get("app"), "app", errors) or {}
    current_exchange = None
    if app.get("current_exchange") is not None:
        current_exchange = _text(app.get("current_exchange"), "app.current_exchange", errors)
    exchanges = _mapping(data.get("exchanges"), "exchanges", errors) or {}
    for name, block in exchanges.items():
        block = _mapping(block, f"exchanges.{name}", errors) or {}
        if block.get("passphrase"):
            notes.append(f"exchanges.{name}.passphrase: not imported (accounts here take an API key and secret only)")
    lock = _parse_lock(data.get("distributed_lock"), "distributed_lock", errors)
    market_type = _market_type(data, exchanges, market, notes)

    trading = data.get("trading")
    if trading is None:
        errors.append("trading: is required (the trading.symbols list)")
        raise ConfigError(errors, source=source)
    trading = _mapping(trading, "trading", errors)
    if trading is None:
        raise ConfigError(errors, source=source)
    for key in trading:
        if key in IGNORED_TRADING_KEYS:
            ignored.append(f"trading.{key}")
        elif key not in TRADING_KEYS:
            notes.append(f"trading.{key}: unknown key, ignored{_close_match(str(key), TRADING_KEYS)}")

    if account is not None and not _ACCOUNT_NAME.fullmatch(account):
        errors.append(f"--account: {account!r} cannot name an account (1-64 letters, digits, - or _)")
        account = None

    raw_symbols = trading.get("symbols")
    if raw_symbols is None:
        raw_symbols = []
    if not isinstance(raw_symbols, list):
        errors.append(f"trading.symbols: expected a list, got {_show(raw_symbols)}")
        raw_symbols = []
    if raw_symbols:
        sources = [(f"trading.symbols[{i}]", item) for i, item in enumerate(raw_symbols)]
    elif trading.get("symbol") is not None:
        sources = [("trading", trading)]  # the legacy single-symbol layout
    else:
        errors.append("trading.symbols: no symbols to import (the list is empty and trading.symbol is not set)")
        sources = []

    entries: list[SymbolEntry] = []
    for path, item in sources:
        entry = _symbol_entry(path, item, trading, current_exchange, exchanges, account, errors, ignored,
                              market_type=market_type, data=data, notes=notes)
        if entry is not None:
            entries.append(entry)

    seen: dict[tuple[str, str], str] = {}
    for entry in entries:
        key = (entry.account.name, entry.symbol)
        if key in seen:
            errors.append(f"{entry.path}.symbol: {entry.symbol} for account {entry.account.name} is already at {seen[key]}")
        seen.setdefault(key, entry.path)
    _check_accounts_agree(entries, errors)

    if errors:
        raise ConfigError(errors, source=source)
    lock = lock or LockConfig(backend="nop")
    if lock.namespace != DEFAULT_LOCK_PREFIX:
        notes.append(
            f"distributed_lock.prefix: {lock.namespace!r} differs from the lock key prefix runbot uses "
            f"({DEFAULT_LOCK_PREFIX!r}); no environment variable changes it"
        )
    imported = {"app", "exchanges", "trading", "distributed_lock"} | ({"risk_control"} if market_type == "usdm" else set())
    others = sorted(str(k) for k in data if k not in imported)
    if market_type == "usdm" and isinstance(data.get("risk_control"), Mapping):
        ignored.extend(f"risk_control.{key}" for key in data["risk_control"] if key != "max_leverage")
    if others:
        notes.append(f"not imported (other blocks of the file): {', '.join(others)}")
    return ConfigPlan(source=source, symbols=tuple(entries), lock=lock, ignored=tuple(dict.fromkeys(ignored)),
                      notes=tuple(dict.fromkeys(notes)))


def _symbol_entry(
    path: str,
    item: Any,
    trading: Mapping,
    current_exchange: str | None,
    exchanges: Mapping,
    account: str | None,
    errors: list[str],
    ignored: list[str],
    *,
    market_type: str = "spot",
    data: Mapping | None = None,
    notes: list[str] | None = None,
) -> SymbolEntry | None:
    start = len(errors)
    legacy = path == "trading"
    if not isinstance(item, Mapping):
        errors.append(f"{path}: expected a mapping, got {_show(item)}")
        return None
    if not legacy:
        for key in item:
            if key in IGNORED_SYMBOL_KEYS:
                ignored.append(f"{path}.{key}")
            elif key not in ENTRY_KEYS:
                errors.append(f"{path}.{key}: unknown key{_close_match(str(key), ENTRY_KEYS | IGNORED_SYMBOL_KEYS)}")

    symbol = None
    if "symbol" in item:
        symbol = unified_symbol(item["symbol"], f"{path}.symbol", errors)
    else:
        errors.append(f"{path}.symbol: is required")

    values: dict[str, Any] = {}
    for key, (reader, default, check) in SYMBOL_KEYS.items():
        value, where = item.get(key), f"{path}.{key}"
        if value is None and not legacy:
            value, where = trading.get(key), f"trading.{key}"  # falls back to the legacy field
        if value is None:
            if default is _REQUIRED:
                errors.append(f"{path}.{key}: is required")
                continue
            values[key] = values.get("buy_window_size") if default is _SAME_AS_BUY else default
            continue
        parsed = _checked(reader, check, value, where, errors)
        if parsed is not None:
            values[key] = parsed
    quantity, minimum = values.get("order_quantity"), values.get("min_order_value")
    if quantity is not None and minimum is not None and quantity < minimum:
        errors.append(
            f"{path}.order_quantity: {_show(quantity)} is below min_order_value {_show(minimum)}: "
            f"every order would be under the minimum notional"
        )

    risk_path, risk_block = f"{path}.grid_risk_control", item.get("grid_risk_control")
    if risk_block is None and not legacy:
        risk_path, risk_block = "trading.grid_risk_control", trading.get("grid_risk_control")
    max_layers, stop_loss = _grid_risk(risk_block, risk_path, errors, ignored)

    exchange = None
    exchange_named_by = "default"
    if item.get("exchange") is not None:
        exchange = _text(item.get("exchange"), f"{path}.exchange", errors)
        exchange_named_by = f"{path}.exchange"
    elif current_exchange:
        exchange, exchange_named_by = current_exchange, "app.current_exchange"
    if account is not None:
        name, named_by = account, "--account"
    elif exchange:
        name, named_by = exchange, exchange_named_by
    else:
        name, named_by = PAPER_ACCOUNT, "default"
    spec = _account_spec(name, named_by, exchange, exchanges, errors, market_type)
    leverage, max_leverage = _futures_limits(data or {}, exchanges, exchange, market_type, errors, ignored,
                                             notes if notes is not None else [])

    if len(errors) > start or symbol is None or spec is None:
        return None
    return SymbolEntry(path=path, symbol=symbol, account=spec, exchange=exchange, max_grid_layers=max_layers,
                       stop_loss_ratio=stop_loss, leverage=leverage, max_leverage=max_leverage, **values)


def _grid_risk(block: Any, path: str, errors: list[str], ignored: list[str]) -> tuple[int, Decimal]:
    """(max_grid_layers, stop_loss_ratio) from a grid_risk_control block; (0, 0) when it is off."""
    block = _mapping(block, path, errors)
    if not block:
        return 0, Decimal(0)
    for key in block:
        if key in IGNORED_RISK_KEYS:
            ignored.append(f"{path}.{key}")
        elif key not in RISK_KEYS:
            errors.append(f"{path}.{key}: unknown key{_close_match(str(key), RISK_KEYS | IGNORED_RISK_KEYS)}")
    enabled = _boolean(block.get("enabled", False), f"{path}.enabled", errors)
    layers, ratio = 0, Decimal(0)
    if block.get("max_grid_layers") is not None:
        layers = _checked(_integer, not_negative, block["max_grid_layers"], f"{path}.max_grid_layers", errors) or 0
    if block.get("stop_loss_ratio") is not None:
        ratio = _checked(_decimal, below_one, block["stop_loss_ratio"], f"{path}.stop_loss_ratio", errors) or Decimal(0)
    if not enabled:
        for key in ("max_grid_layers", "stop_loss_ratio"):
            if block.get(key) is not None:
                ignored.append(f"{path}.{key} (grid_risk_control is disabled)")
        return 0, Decimal(0)
    return layers, ratio


def _check_accounts_agree(entries: list[SymbolEntry], errors: list[str]) -> None:
    """All symbols of one account must agree on its exchange."""
    first: dict[str, SymbolEntry] = {}
    for entry in entries:
        other = first.setdefault(entry.account.name, entry)
        if other.account.exchange_id != entry.account.exchange_id:
            errors.append(
                f"{entry.path}.exchange: puts account {entry.account.name} on {entry.account.exchange_id}, "
                f"but {other.path} puts it on {other.account.exchange_id}"
            )
