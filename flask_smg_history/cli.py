"""The ``flask smg-history`` command group: check, stats, search, purge,
export, import, copy, erase and init-db.

Commands print plain results and exit non-zero on failure. Long operations
stream records in batches (constant memory) and show a click progress bar on a
terminal, or plain progress lines on stderr when not on one (logs, CI).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import sys
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import IO, Any

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from . import training
from .api import render
from .backends import Backend, load_backend_class
from .backends.usage import TOKEN_FIELDS
from .config import KEYS_BY_NAME, load_settings
from .errors import HistoryError
from .portable import dumps, loads
from .records import RATINGS, RECORD_KINDS, Record, batched
from .state import get_state
from .store import MAX_PAGE, guarded

smg_history_cli = AppGroup("smg-history", help="Inspect and operate the conversation history store.")

#: Where ``copy --to-url`` goes for each backend.
URL_KEYS = {
    "postgres": "SMG_HISTORY_POSTGRES_DB_URL",
    "redis": "SMG_HISTORY_REDIS_URL",
    "sqlite": "SMG_HISTORY_SQLITE_PATH",
    "oracle": "SMG_HISTORY_ORACLE_DSN",
    "file": "SMG_HISTORY_FILE_PATH",
}


def _backend_call(operation: str, fn, *args, **kwargs):
    """A backend call with the store's failure handling, as a click error."""
    state = get_state()
    try:
        return state.call(operation, fn, *args, **kwargs)
    except Exception as exc:
        raise click.ClickException(f"{operation} failed on backend {state.backend.name!r}: {exc}") from exc


def _when(ts: float | None) -> str:
    return "-" if ts is None else dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds")


class _Progress:
    """A click progress bar on a terminal, plain lines on stderr otherwise."""

    def __init__(self, label: str, total: int | None, unit: str = "records") -> None:
        self.label, self.total, self.done, self.unit = label, total, 0, unit
        self._bar = None
        self._last = time.monotonic()
        if sys.stderr.isatty():
            self._bar = click.progressbar(length=total, label=label, file=sys.stderr)
            self._bar.__enter__()

    def advance(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif time.monotonic() - self._last >= 2:
            self._last = time.monotonic()
            of = f"/{self.total}" if self.total else ""
            click.echo(f"{self.label}: {self.done}{of} {self.unit}", err=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
        click.echo(f"{self.label}: {self.done} {self.unit} done", err=True)


def _total(stats: dict[str, Any]) -> int:
    return stats["conversations"] + stats["items"] + stats["responses"] + sum(stats["feedback"].values())


@smg_history_cli.command("check")
@click.option("--strict", is_flag=True, help="Exit non-zero when the backend reports a warning.")
def check(strict: bool) -> None:
    """Connect, check the backend and its schema, print settings and counts.

    A backend's health may report ``persistence`` (Redis: what a restart would
    lose, per master) and ``warnings``; both are printed. A reachable backend
    with warnings still exits 0 with "status: ok" (the store works), unless
    --strict is given."""
    state = get_state()
    detail = _backend_call("health", state.backend.health)
    click.echo(f"backend: {state.backend.name}")
    in_use = state.backend.settings_in_use()
    for name, value in state.settings.masked().items():
        default = f"{in_use[name]!r} (default)" if value is None and name in in_use else None
        click.echo(f"  {name} = {default or repr(value)}")
    click.echo(f"health: {json.dumps(detail, default=str)}")
    for node in detail.get("persistence", ()):
        click.echo(f"persistence: {node['node']}: {node['summary']}")
    warnings = detail.get("warnings", [])
    for warning in warnings:
        click.echo(f"warning: {warning}")
    stats = _backend_call("stats", state.backend.stats, None)
    click.echo(
        f"records: {stats['conversations']} conversations, {stats['items']} items, "
        f"{stats['responses']} responses, {sum(stats['feedback'].values())} feedback"
    )
    if warnings and strict:
        raise click.ClickException(f"{len(warnings)} warning(s), and --strict was given.")
    click.echo("status: ok")


@smg_history_cli.command("stats")
@click.option("--owner", help="Only this owner's records.")
@click.option("--by-owner", is_flag=True, help="One summary line (with --json: one JSON object) per owner.")
@click.option("--since", type=click.DateTime(), help="Only records created at or after this time (UTC).")
@click.option("--json", "as_json", is_flag=True, help="The figures as JSON, as GET /history/stats answers them.")
def stats(owner: str | None, by_owner: bool, since: dt.datetime | None, as_json: bool) -> None:
    """Usage figures of live records: conversations, items by type and role,
    responses and token usage by model and by day, feedback by rating and
    model. Counted in the database (docs/store-api.md says what each is)."""
    backend = get_state().backend
    since_ts = _timestamp(since)
    owners = _backend_call("owners", backend.owners) if by_owner else [owner]
    for name in owners:
        figures = {"since": since_ts, **_backend_call("stats", backend.usage_stats, name, since=since_ts)}
        if as_json:
            click.echo(json.dumps({"owner": name, **render.usage_stats(figures)}))
            continue
        prefix = f"{name}: " if by_owner else ""
        click.echo(prefix + _summary(figures))
        if not by_owner:
            for line in _breakdown(figures):
                click.echo(line)


def _timestamp(when: dt.datetime | None) -> float | None:
    """A ``click.DateTime`` (naive, meant as UTC) as Unix seconds."""
    return None if when is None else when.replace(tzinfo=dt.timezone.utc).timestamp()


def _summary(figures: dict[str, Any]) -> str:
    conversations, feedback = figures["conversations"], figures["feedback"]["by_rating"]
    return (
        f"conversations={conversations['total']} items={figures['items']['total']} "
        f"responses={figures['responses']['total']} "
        f"feedback_positive={feedback['positive']} feedback_negative={feedback['negative']} "
        f"oldest={_when(conversations['first_created_at'])} newest={_when(conversations['last_created_at'])}"
    )


def _pairs(counts: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in counts.items())


def _breakdown(figures: dict[str, Any]) -> Iterator[str]:
    """The figures behind the summary, one ``key=value`` line each."""
    items, responses, feedback = figures["items"], figures["responses"], figures["feedback"]
    yield f"items_by_type: {_pairs(items['by_type'])}".rstrip()
    yield f"items_by_role: {_pairs(items['by_role'])}".rstrip()
    yield "tokens: " + _pairs({name: responses[name] for name in TOKEN_FIELDS})
    for model, row in responses["by_model"].items():
        yield f"model={model} {_pairs(row)}"
    for day, row in responses["by_day"].items():
        yield f"day={day} {_pairs(row)}"
    for model, row in feedback["by_model"].items():
        yield f"feedback model={model} {_pairs(row)}"


@smg_history_cli.command("search")
@click.argument("query")
@click.option("--owner", required=True, help="Whose history to search.")
@click.option("--conversation", help="Only in this conversation (its ID).")
@click.option("--limit", type=click.IntRange(1, MAX_PAGE), default=20, show_default=True, help="Hits to print.")
@click.option("--after", help="Continue after this hit (the cursor printed after a full page).")
def search(query: str, owner: str, conversation: str | None, limit: int, after: str | None) -> None:
    """Search one owner's conversations and items, as GET /search does.

    Prints one tab-separated line per hit: conversation ID, item ID, role
    (both "-" for a match in the conversation's metadata) and the snippet,
    matches in bold on a terminal. QUERY takes words, "phrases", -excluded
    words and `or`. A summary, and the cursor to pass as --after when there
    are more hits, go to stderr."""
    state = get_state()
    try:
        page = state.store_for(owner).search(query, limit=limit, after=after, conversation=conversation)
    except HistoryError as exc:
        raise click.ClickException(exc.message) from exc
    for hit in page.data:
        fields = (hit.conversation_id, hit.item_id or "-", hit.role or "-", _plain_snippet(hit.snippet))
        click.echo("\t".join(fields))
    more = f"; more: --after {page.last_id}" if page.has_more else ""
    click.echo(f"{len(page.data)} hits{more}", err=True)


def _plain_snippet(snippet: str) -> str:
    """A hit's snippet (HTML-escaped text, matches in ``<mark>``) for a
    terminal: the text as written, matches in bold, on one line."""
    parts = re.split(r"<mark>(.*?)</mark>", snippet)  # text, match, text, ..., text
    text = "".join(click.style(html.unescape(p), bold=True) if i % 2 else html.unescape(p) for i, p in enumerate(parts))
    return " ".join(text.split())


@smg_history_cli.command("purge")
@click.option("--older-than", type=click.FloatRange(min=0), help="Also remove what is older than DAYS.")
@click.option("--dry-run", is_flag=True, help="Only report what would be removed.")
def purge(older_than: float | None, dry_run: bool) -> None:
    """Remove expired records (and, with --older-than, old ones)."""
    backend = get_state().backend
    before = None if older_than is None else time.time() - older_than * 86400
    result = _backend_call("purge", backend.purge, before=before, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb}: " + " ".join(f"{k}={v}" for k, v in result.items()))


@smg_history_cli.command("export")
@click.option("--owner", help="Only this owner's records.")
@click.option(
    "--since",
    type=click.DateTime(),
    help="Only records written at or after this time (UTC); with a training format, votes given from then on.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["records", *training.FORMATS]),
    default="records",
    show_default=True,
    help="records: every record, for import. chat-jsonl: one OpenAI fine-tuning example per rated response. "
    "preference-jsonl: OpenAI preference (DPO) pairs of answers rated positive and negative.",
)
@click.option("--rating", type=click.Choice(RATINGS), help="chat-jsonl: only responses rated so.")
@click.option("--model", help="chat-jsonl, preference-jsonl: only responses of this model.")
@click.option("-o", "--output", type=click.File("w"), default="-", help="File to write (default: stdout).")
def export(
    owner: str | None, since: dt.datetime | None, fmt: str, rating: str | None, model: str | None, output: IO[str]
) -> None:
    """Write every record as JSON Lines, or rated responses as fine-tuning
    data (--format), streaming."""
    if fmt != "records":
        _export_training(fmt, owner, _timestamp(since), rating, model, output)
        return
    if rating is not None or model is not None:
        raise click.UsageError("--rating and --model apply to --format chat-jsonl and preference-jsonl only.")
    backend = get_state().backend
    since_ts = _timestamp(since)
    progress = _Progress("export", _total(_backend_call("stats", backend.stats, owner)))
    records = _backend_call("export", backend.export, owner, since_ts)
    for batch in batched(records, 500):
        output.write("".join(dumps(record) + "\n" for record in batch))
        progress.advance(len(batch))
    output.flush()
    progress.close()


def _export_training(
    fmt: str, owner: str | None, since: float | None, rating: str | None, model: str | None, output: IO[str]
) -> None:
    """Rated responses as fine-tuning lines (``training.py``), with a bar
    over the votes read and a summary of what was skipped and why."""
    if fmt == "preference-jsonl" and rating is not None:
        raise click.UsageError("--rating does not apply to preference-jsonl: a pair holds both ratings.")
    backend = get_state().backend
    votes = _backend_call("stats", backend.usage_stats, owner, since=since)["feedback"]
    by_rating = votes["by_model"].get(model, {}) if model is not None else votes["by_rating"]
    total = by_rating.get(rating, 0) if rating is not None else sum(by_rating.values())
    progress = _Progress(f"export {fmt}", total, unit="rated responses")
    owners = [owner] if owner is not None else _backend_call("owners", backend.owners)
    rated = training.RatedResponses(
        backend, owners, rating=rating, model=model, since=since, on_read=lambda: progress.advance(1)
    )
    lines = training.chat_lines(rated) if fmt == "chat-jsonl" else training.preference_lines(rated)
    written = 0
    try:
        for line in lines:
            output.write(json.dumps(line) + "\n")
            written += 1
    except Exception as exc:
        raise click.ClickException(f"export failed after {rated.read} rated responses: {exc}") from exc
    output.flush()
    progress.close()
    reasons = "".join(f"; {n} with {reason}" for reason, n in sorted(rated.skipped.items()))
    click.echo(f"{fmt}: {written} lines written, {sum(rated.skipped.values())} responses skipped{reasons}", err=True)


def _read(lines: Iterable[str], source: str) -> Iterator[Record]:
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                yield loads(line)
            except ValueError as exc:
                raise click.ClickException(f"{source}, line {number}: {exc}") from None


def _import_stream(backend: Backend, records: Iterable[Record], progress: _Progress, batch_size: int) -> dict:
    totals: dict[str, int] = {}
    for batch in batched(records, batch_size):
        counts = guarded(backend, None, "import", backend.import_records, batch)
        for kind, n in counts.items():
            totals[kind] = totals.get(kind, 0) + n
        progress.advance(len(batch))
    return totals


@smg_history_cli.command("import")
@click.argument("source", type=click.File("r"))
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True)
def import_(source: IO[str], batch_size: int) -> None:
    """Read JSON Lines written by export; re-importing is harmless."""
    backend = get_state().backend
    progress = _Progress("import", None)
    try:
        totals = _import_stream(backend, _read(source, source.name), progress, batch_size)
    except click.ClickException:
        raise
    except Exception as exc:
        raise click.ClickException(f"import failed after {progress.done} records: {exc}") from exc
    progress.close()
    _backend_call("refresh_statistics", backend.refresh_statistics)
    click.echo("imported: " + " ".join(f"{k}={v}" for k, v in sorted(totals.items())))


def _target_backend(name: str, url: str | None, settings: tuple[str, ...]) -> Backend:
    config = get_state().settings.as_config()
    config["SMG_HISTORY_BACKEND"] = name
    if url is not None:
        if name not in URL_KEYS:
            raise click.BadParameter(f"--to-url does not apply to backend {name!r}", param_hint="--to-url")
        config[URL_KEYS[name]] = url
    given: dict[str, str] = {}  # read as environment values are: "true", "30" convert to their types
    for pair in settings:
        key, sep, value = pair.partition("=")
        if not sep or key not in KEYS_BY_NAME:
            raise click.BadParameter(f"expected SMG_HISTORY_KEY=VALUE, got {pair!r}", param_hint="--set")
        config.pop(key, None)
        given[key] = value
    target_settings = load_settings(config, environ=given)
    return load_backend_class(name)(name, target_settings, current_app)


@smg_history_cli.command("copy")
@click.option("--to-backend", "to_backend", required=True, help="memory, sqlite, postgres, redis or oracle.")
@click.option("--to-url", help="The target's URL (PostgreSQL or Redis URL, SQLite path, Oracle DSN).")
@click.option("--set", "settings", multiple=True, help="Another target setting, SMG_HISTORY_KEY=VALUE.")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), help="Resume file.")
@click.option("--restart", is_flag=True, help="Ignore the checkpoint and copy everything again.")
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True)
@with_appcontext
def copy(
    to_backend: str,
    to_url: str | None,
    settings: tuple[str, ...],
    checkpoint: Path | None,
    restart: bool,
    batch_size: int,
) -> None:
    """Copy every record to another backend, resumably, and verify counts.

    Records are copied in export order; after each batch the number copied is
    saved in the checkpoint file, and a re-run skips that many. Import is
    idempotent, so copying a record twice is harmless."""
    source = get_state().backend
    target = _target_backend(to_backend, to_url, settings)
    checkpoint = checkpoint or Path(current_app.instance_path) / f"smg-history-copy-to-{to_backend}.json"
    done = 0
    if checkpoint.exists() and not restart:
        done = json.loads(checkpoint.read_text()).get("copied", 0)
        click.echo(f"resuming after {done} records (checkpoint {checkpoint})", err=True)
    stats = _backend_call("stats", source.stats, None)
    progress = _Progress(f"copy to {to_backend}", _total(stats))
    progress.advance(done)
    records = islice(_backend_call("export", source.export, None, None), done, None)
    try:
        for batch in batched(records, batch_size):
            guarded(target, None, "import", target.import_records, batch)
            done += len(batch)
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            checkpoint.write_text(json.dumps({"copied": done}))
            progress.advance(len(batch))
    except Exception as exc:
        raise click.ClickException(
            f"copy stopped after {done} records: {exc}. Run the same command again to resume."
        ) from exc
    finally:
        progress.close()
    guarded(target, None, "refresh_statistics", target.refresh_statistics)
    copied = target.stats(None)
    target.close()
    keys = RECORD_KINDS
    mismatched = [k for k in keys if copied[k] != stats[k]]
    if mismatched:
        raise click.ClickException(
            "counts differ after copy: " + ", ".join(f"{k}: source {stats[k]} target {copied[k]}" for k in mismatched)
        )
    checkpoint.unlink(missing_ok=True)
    click.echo("copied: " + " ".join(f"{k}={stats[k] if k != 'feedback' else sum(stats[k].values())}" for k in keys))
    click.echo("verified: counts match")


@smg_history_cli.command("erase")
@click.option("--owner", required=True, help="The owner whose history is erased.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def erase(owner: str, yes: bool) -> None:
    """Erase every conversation, item, response and feedback of one owner."""
    if not yes:
        click.confirm(f"Erase all history of {owner!r}?", abort=True)
    backend = get_state().backend
    counts = _backend_call("erase_owner", backend.erase_owner, owner)
    click.echo("erased: " + " ".join(f"{k}={v}" for k, v in counts.items()))


@smg_history_cli.command("init-db")
@click.option("--sql", is_flag=True, help="Print the SQL instead of running it.")
def init_db(sql: bool) -> None:
    """Create or upgrade the history tables (SQL backends), for apps without
    Flask-Migrate; with Flask-Migrate, `flask db upgrade` does the same."""
    from .backends.sql import SqlBackend, migrate

    backend = get_state().backend
    backend = getattr(backend, "sql", backend)  # a hybrid backend's tables are those of its SQL half
    if not isinstance(backend, SqlBackend):
        raise click.ClickException(f"backend {backend.name!r} has no tables to create (SQL backends only).")
    try:
        migrate.upgrade(backend, sql=sql)
    except backend.unavailable_errors as exc:
        raise click.ClickException(f"backend {backend.name!r} is unreachable ({type(exc).__name__}).") from exc
    if not sql:
        click.echo(f"history tables at revision {migrate.head_revision()}")
