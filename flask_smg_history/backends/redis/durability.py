"""What a restart of the Redis server would lose: each master's persistence
settings, read from the server, and the loss window they give.

Why this exists: Redis is the store of record here, yet a server started
without persistence (the default of many containers and test set-ups) answers
every write "OK" and forgets them all when it restarts. Nothing in the request
path can tell, so ``health()`` reports it per master, and
``flask smg-history check`` prints it and warns, naming the settings to
change (docs/backends/redis.md, "Durability: what a restart can lose").

The facts come from ``CONFIG GET`` (``appendonly``, ``appendfsync``,
``save``, ``no-appendfsync-on-rewrite``) and ``INFO persistence``
(``aof_enabled`` and the last write statuses), in one pipeline with a
``PING``. Managed services often disable or rename ``CONFIG``: then only
``INFO`` is read, which tells whether the AOF is on but neither the fsync
policy nor the save rules, and the report says so. When neither answers the
window is ``unknown``, with a warning; it is never an error, because the
health probe must keep working on such a server.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import redis.exceptions as rex

#: The ``CONFIG GET`` parameters read (one each: Redis before 7 takes one).
SETTINGS = ("appendonly", "appendfsync", "save", "no-appendfsync-on-rewrite")
#: The ``INFO persistence`` fields kept in the report.
STATUS = ("aof_enabled", "aof_last_write_status", "rdb_last_bgsave_status")

#: What to set, in every warning about a window larger than about a second.
_FIX = "set appendonly yes with appendfsync always (no acknowledged write lost) or everysec (up to about 1 s)"


@dataclass
class Persistence:
    """One master's persistence: what was read, from where, and what it means.

    ``window`` is one of ``none`` (AOF, fsync before each reply), ``1s``
    (AOF, fsync every second), ``os`` (AOF, the OS flushes when it likes),
    ``snapshot`` (RDB only: everything since the last snapshot),
    ``everything`` (no persistence) or ``unknown`` (the settings could not be
    read in full)."""

    node: str
    source: str  # "config" (CONFIG GET and INFO), "info" (INFO only) or "none"
    settings: dict[str, str] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    window: str = "unknown"
    summary: str = ""
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The facts, for ``health()``; the warnings go in its one list of
        every node's warnings, which ``check`` prints."""
        facts = asdict(self)
        del facts["warnings"]
        return facts


def report(client: Any, cluster: bool) -> list[Persistence]:
    """The persistence of every master: the server itself, or each primary of
    a cluster (an owner's history lives on one of them, so each one's window
    is that owner's). Outages raise, as any backend call does."""
    if not cluster:
        kwargs = client.connection_pool.connection_kwargs
        node = kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
        return [read(client, node)]
    return [read(client.get_redis_connection(node), node.name) for node in client.get_primaries()]


def read(client: Any, node: str) -> Persistence:
    """Read one server's settings in one round trip and classify them. A
    refused ``CONFIG`` or ``INFO`` (renamed, ACL, managed service) comes back
    in place and is reported, never raised."""
    pipe = client.pipeline(transaction=False)
    pipe.ping()
    for name in SETTINGS:
        pipe.config_get(name)
    pipe.info("persistence")
    ping, *configs, info = pipe.execute(raise_on_error=False)
    for reply in (ping, *configs, info):
        if isinstance(reply, Exception) and (reply is ping or not isinstance(reply, rex.ResponseError)):
            raise reply  # an outage (or a refused PING): the probe fails as any call does
    config_error = next((reply for reply in configs if isinstance(reply, Exception)), None)
    refused = {"CONFIG GET": config_error, "INFO persistence": info if isinstance(info, Exception) else None}
    settings = {}
    if config_error is None:
        for reply in configs:
            settings.update({_text(k): _text(v) for k, v in reply.items()})
    status = {} if isinstance(info, Exception) else {k: info[k] for k in STATUS if k in info}
    if all(name in settings for name in SETTINGS):
        found = Persistence(node, "config", settings, status)
        _classify_config(found)
    elif "aof_enabled" in status:
        found = Persistence(node, "info", settings, status)
        _classify_info(found, refused)
    else:
        found = Persistence(node, "none", settings, status)
        found.summary = "unknown: neither CONFIG GET nor INFO persistence answered"
        found.warnings.append(
            f"{node}: the persistence settings cannot be read ({_reasons(refused)}), so whether a restart "
            f"loses acknowledged writes is unknown; check with your provider that appendonly is yes and "
            f"appendfsync is always or everysec."
        )
    _check_status(found)
    return found


def _classify_config(found: Persistence) -> None:
    """The window of full settings (``CONFIG GET`` answered)."""
    s, node = found.settings, found.node
    save = s["save"].strip()
    if s["appendonly"] == "yes":
        fsync = s["appendfsync"]
        if fsync == "always":
            found.window = "none"
            found.summary = (
                "AOF with appendfsync always: no acknowledged write is lost on a crash of Redis or of the "
                "machine (Redis fsyncs the AOF before it replies; as safe as the disk's fsync)"
            )
        elif fsync == "everysec":
            found.window = "1s"
            found.summary = (
                "AOF with appendfsync everysec: a crash can lose about the last 1 s of acknowledged writes "
                "(2 s in the worst case, when the disk is slow to fsync)"
            )
        else:
            found.window = "os"
            found.summary = (
                "AOF with appendfsync no: the OS decides when the AOF reaches the disk (about every 30 s on "
                "Linux); a machine crash or power loss loses what it had not written"
            )
            found.warnings.append(
                f"{node}: appendfsync no leaves the AOF to the OS: a machine crash loses about the last 30 s "
                f"of acknowledged writes; set appendfsync always or everysec."
            )
        if fsync in ("always", "everysec") and s["no-appendfsync-on-rewrite"] == "yes":
            found.warnings.append(
                f"{node}: no-appendfsync-on-rewrite yes skips the fsync while a snapshot or AOF rewrite "
                f"runs, so a machine crash then loses up to about 30 s of writes; set it to no."
            )
    elif save:
        found.window = "snapshot"
        found.summary = (
            f'RDB snapshots only (save "{save}", appendonly no): a crash loses every write since the last snapshot'
        )
        found.warnings.append(
            f'{node}: only RDB snapshots (appendonly no, save "{save}"): a crash of Redis loses every '
            f"acknowledged write since the last snapshot; {_FIX}."
        )
    else:
        found.window = "everything"
        found.summary = 'no persistence (appendonly no, save ""): a restart loses every write'
        found.warnings.append(
            f'{node}: Redis keeps nothing on disk (appendonly no, save ""): a restart loses every '
            f"acknowledged write; {_FIX}."
        )


def _classify_info(found: Persistence, refused: dict[str, BaseException | None]) -> None:
    """The window when only ``INFO persistence`` answered: whether the AOF is
    on, but not its fsync policy nor the save rules."""
    node, why = found.node, _reasons(refused)
    if found.status["aof_enabled"]:
        found.summary = f"AOF on (aof_enabled:1); appendfsync unknown ({why})"
        found.warnings.append(
            f"{node}: the AOF is on but appendfsync cannot be read ({why}); check with your provider that "
            f"it is always (no acknowledged write lost) or everysec (up to about 1 s)."
        )
    else:
        found.summary = f"AOF off (aof_enabled:0); save rules unknown ({why})"
        found.warnings.append(
            f"{node}: the AOF is off (aof_enabled:0): a restart loses every acknowledged write since the "
            f"last RDB snapshot, or all of them if no save rule is set (the rules cannot be read: {why}); "
            f"{_FIX}."
        )


def _check_status(found: Persistence) -> None:
    """Persistence that is configured but failing: Redis then refuses writes
    (AOF) or, by default, stops accepting them (``stop-writes-on-bgsave-error``)."""
    if found.status.get("aof_last_write_status", "ok") != "ok":
        found.warnings.append(
            f"{found.node}: the last write to the AOF failed (aof_last_write_status:"
            f"{found.status['aof_last_write_status']}); Redis refuses writes until it can write the "
            f"AOF again: see the server log (disk full or not writable)."
        )
    if found.status.get("rdb_last_bgsave_status", "ok") != "ok":
        found.warnings.append(
            f"{found.node}: the last RDB snapshot failed (rdb_last_bgsave_status:"
            f"{found.status['rdb_last_bgsave_status']}); see the server log."
        )


def _reasons(refused: dict[str, BaseException | None]) -> str:
    """Which command was refused and the server's reason, up to its first
    comma (``unknown command 'CONFIG'``, ``NOPERM ...``)."""
    said = [f"{command}: {str(exc).split(',')[0].strip()[:100]}" for command, exc in refused.items() if exc]
    return "; ".join(said) or "no answer"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
