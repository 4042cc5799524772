"""Binance error codes and messages answered by the simulator.

The texts are Binance's own: ccxt maps several of them by exact message, so they must match
byte for byte.
"""
from __future__ import annotations


class SimError(Exception):
    """A request refused with a Binance error code; `status` is the HTTP status to answer."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.status = status

    def payload(self) -> dict:
        return {"code": self.code, "msg": self.msg}


UNKNOWN = -1000
TOO_MANY_REQUESTS = -1003
TOO_MANY_ORDERS = -1015
TIMEOUT = -1007
TIMESTAMP_OUTSIDE_WINDOW = -1021
INVALID_SIGNATURE = -1022
ILLEGAL_CHARS = -1100
DUPLICATE_PARAM = -1101
MANDATORY_PARAM = -1102
PARAM_NOT_REQUIRED = -1106
INVALID_TIF = -1115
INVALID_ORDER_TYPE = -1116
INVALID_SIDE = -1117
INVALID_INTERVAL = -1120
INVALID_SYMBOL = -1121
INVALID_RECV_WINDOW = -1131
FILTER_FAILURE = -1013
NEW_ORDER_REJECTED = -2010
CANCEL_REJECTED = -2011
NO_SUCH_ORDER = -2013
API_KEY_FORMAT = -2014
REJECTED_API_KEY = -2015

MSG_INSUFFICIENT_BALANCE = "Account has insufficient balance for requested action."
MSG_DUPLICATE_ORDER = "Duplicate order sent."
MSG_WOULD_TAKE = "Order would immediately match and take."
MSG_NO_SUCH_ORDER = "Order does not exist."
MSG_UNKNOWN_ORDER = "Unknown order sent."


def invalid_symbol() -> SimError:
    return SimError(INVALID_SYMBOL, "Invalid symbol.")


def mandatory(name: str) -> SimError:
    return SimError(
        MANDATORY_PARAM, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def illegal(name: str, legal: str) -> SimError:
    return SimError(
        ILLEGAL_CHARS, f"Illegal characters found in parameter '{name}'; legal range is '{legal}'."
    )


def filter_failure(filter_type: str) -> SimError:
    return SimError(FILTER_FAILURE, f"Filter failure: {filter_type}")


def new_order_rejected(msg: str) -> SimError:
    return SimError(NEW_ORDER_REJECTED, msg)


def no_such_order() -> SimError:
    return SimError(NO_SUCH_ORDER, MSG_NO_SUCH_ORDER)


def unknown_order() -> SimError:
    return SimError(CANCEL_REJECTED, MSG_UNKNOWN_ORDER)


def too_much_weight(limit: int) -> SimError:
    return SimError(
        TOO_MANY_REQUESTS,
        f"Too much request weight used; current limit is {limit} request weight per 1 MINUTE. "
        "Please use WebSocket Streams for live updates to avoid polling the API.",
        status=429,
    )


def ip_banned(until_ms: int) -> SimError:
    return SimError(TOO_MANY_REQUESTS, f"Way too much request weight used; IP banned until {until_ms}. "
                    "Please use WebSocket Streams for live updates to avoid bans.", status=418)


def too_many_orders(limit: int, interval: str) -> SimError:
    return SimError(TOO_MANY_ORDERS, f"Too many new orders; current limit is {limit} orders per {interval}.", status=429)
