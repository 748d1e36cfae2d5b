"""python-oracledb connect options built from the ``SMG_HISTORY_ORACLE_*`` keys.

The SQL backend serves Oracle like any other dialect; only the connection is
special, and SMG users know its three forms: a DSN with user and password, an
Autonomous Database wallet with a TNS alias, and external authentication (OS or
wallet credentials, which python-oracledb supports only in thick mode). This
module turns the settings into keyword arguments for ``oracledb.create_pool``
and fails with a ``ConfigError`` that names the keys, so a wrong combination is
caught at start-up rather than at the first query.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError

if TYPE_CHECKING:
    from ...config import Settings

_DSN = "SMG_HISTORY_ORACLE_DSN"
_WALLET = "SMG_HISTORY_ORACLE_WALLET_PATH"
_ALIAS = "SMG_HISTORY_ORACLE_TNS_ALIAS"
_USER = "SMG_HISTORY_ORACLE_USER"
_PASSWORD = "SMG_HISTORY_ORACLE_PASSWORD"
_EXTERNAL = "SMG_HISTORY_ORACLE_EXTERNAL_AUTH"


@dataclass(frozen=True)
class OracleOptions:
    """What ``oracledb.create_pool`` is called with, and whether thick mode
    must be enabled first."""

    pool_args: dict[str, Any] = field(default_factory=dict)
    thick_mode: bool = False


def connect_options(settings: Settings) -> OracleOptions:
    """Validate the Oracle keys and build the pool arguments. Exactly one of a
    DSN or a wallet with a TNS alias; user and password unless external
    authentication is on."""
    dsn, wallet, alias = settings.oracle_dsn, settings.oracle_wallet_path, settings.oracle_tns_alias
    if dsn and (wallet or alias):
        raise ConfigError(
            f"Give either {_DSN} or {_WALLET} with {_ALIAS}, not both (env: ATP_DSN, ATP_WALLET_PATH, ATP_TNS_ALIAS).",
            param=_DSN,
        )
    if not dsn and not (wallet and alias):
        missing = _ALIAS if wallet else _WALLET if alias else f"{_DSN} (or {_WALLET} with {_ALIAS})"
        raise ConfigError(
            f"The oracle backend needs {missing}: a connect string like 'host:1521/service', "
            "or the directory of an Autonomous Database wallet and a TNS alias from its tnsnames.ora "
            "(env: ATP_DSN, ATP_WALLET_PATH, ATP_TNS_ALIAS).",
            param=_ALIAS if wallet else _WALLET if alias else _DSN,
        )
    args: dict[str, Any] = {
        "dsn": dsn or alias,
        "min": settings.oracle_pool_min,
        "max": settings.oracle_pool_max,
        "increment": 1,
        # Waiting callers give up after the pool timeout instead of hanging.
        "wait_timeout": settings.oracle_pool_timeout_secs * 1000,
    }
    if settings.oracle_pool_min > settings.oracle_pool_max:
        raise ConfigError(
            "SMG_HISTORY_ORACLE_POOL_MIN must not exceed SMG_HISTORY_ORACLE_POOL_MAX "
            "(env: ATP_POOL_MIN, ATP_POOL_MAX).",
            param="SMG_HISTORY_ORACLE_POOL_MIN",
        )
    if wallet:
        args.update(config_dir=wallet, wallet_location=wallet)
        if settings.oracle_password:
            args["wallet_password"] = settings.oracle_password
    if settings.oracle_external_auth:
        if settings.oracle_user or settings.oracle_password:
            raise ConfigError(
                f"{_EXTERNAL} is true: leave {_USER} and {_PASSWORD} unset (the credentials come from the "
                "wallet or the operating system).",
                param=_EXTERNAL,
            )
        args.update(externalauth=True, homogeneous=False)
        return OracleOptions(args, thick_mode=True)
    if not settings.oracle_user or not settings.oracle_password:
        raise ConfigError(
            f"The oracle backend needs {_USER} and {_PASSWORD} (env: ATP_USER, ATP_PASSWORD), "
            f"or {_EXTERNAL}=true for external authentication.",
            param=_USER if not settings.oracle_user else _PASSWORD,
        )
    args.update(user=settings.oracle_user, password=settings.oracle_password)
    return OracleOptions(args)


def enable_thick_mode() -> None:
    """Load the Oracle client libraries (thick mode), which external
    authentication needs; a missing library becomes a ``ConfigError``."""
    import oracledb

    if not oracledb.is_thin_mode():
        return
    try:
        oracledb.init_oracle_client()
    except oracledb.Error as exc:
        raise ConfigError(
            f"{_EXTERNAL}=true needs python-oracledb thick mode, but the Oracle client libraries could not be "
            f"loaded ({exc}). Install Oracle Instant Client and put it on the library path (LD_LIBRARY_PATH).",
            param=_EXTERNAL,
        ) from exc
