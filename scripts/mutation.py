"""Mutation testing of the modules where a bug is a breach or a loss.

mutmut plants one small bug at a time (a flipped comparison, a dropped
argument, a changed string) in the modules named in ``[tool.mutmut]`` of
pyproject.toml, runs the tests that reach the changed function, and counts
the mutants the tests kill. Each module has its own tests and backends
(``MODULES`` below: the memory backend for the core, SQLite and PostgreSQL
for the SQL search and statistics, SQLite with Redis for the hybrid
backend, the file backend's own folder); a run over several modules runs
the union of theirs. docs/testing.md has the last score and explains every
mutant that survived.

    python scripts/mutation.py                   # every module (hours on 2 shared cores: run groups)
    python scripts/mutation.py state portable     # some modules (names below)
    python scripts/mutation.py --report           # the table of the last run, without running

It runs at the lowest CPU priority, starts from a fresh ``mutants/`` copy
(results cached from other code would be stale), prints a table per module
and exits 1 when fewer than ``--minimum`` percent (default 90) were killed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]


class Module(NamedTuple):
    """A mutated module: its mutmut name prefix, the test backends
    (``SMG_HISTORY_TEST_BACKENDS``) and the tests (paths under the project)
    its mutants are run against."""

    prefix: str
    backends: tuple[str, ...]
    tests: tuple[str, ...]


#: The fast tests on the memory backend: the contract suite, HTTP,
#: extension, CLI, record format, store and hostile input.
CORE_TESTS = (
    "tests/contract",
    "tests/test_http.py",
    "tests/test_extension.py",
    "tests/test_cli.py",
    "tests/test_portable.py",
    "tests/test_store.py",
    "tests/hardening/test_bad_input.py",
    "tests/hardening/test_security.py",
)
SEARCH_TESTS = ("tests/contract/test_search.py", "tests/contract/test_collisions.py", "tests/test_search_api.py")
STATS_TESTS = ("tests/contract/test_stats.py", "tests/contract/test_collisions.py")
FILE_TESTS = ("tests/file_backend", "tests/contract")
#: Short names of the mutated modules (each in ``only_mutate`` of pyproject.toml).
MODULES = {
    "state": Module("flask_smg_history.state.", ("memory",), CORE_TESTS),
    "store": Module("flask_smg_history.store.", ("memory",), CORE_TESTS),
    "schemas": Module("flask_smg_history.schemas.", ("memory",), CORE_TESTS),
    "portable": Module("flask_smg_history.portable.", ("memory",), CORE_TESTS),
    "memory": Module("flask_smg_history.backends.memory.", ("memory",), CORE_TESTS),
    # the query language, cursors and snippets every backend shares (SQLite reaches ``marked``)
    "search": Module("flask_smg_history.search.", ("memory", "sqlite"), SEARCH_TESTS),
    # PostgreSQL's and SQLite's statements (the shared-item-ID joins among them)
    "sql_search": Module(
        "flask_smg_history.backends.sql.search.",
        ("sqlite", "postgres"),
        (*SEARCH_TESTS, "tests/sql_backend/test_search_sql.py"),
    ),
    "usage": Module("flask_smg_history.backends.usage.", ("memory",), STATS_TESTS),
    "sql_stats": Module(
        "flask_smg_history.backends.sql.stats.",
        ("sqlite", "postgres"),
        (*STATS_TESTS, "tests/sql_backend/test_stats_sql.py"),
    ),
    "training": Module(
        "flask_smg_history.training.",
        ("memory",),
        ("tests/test_training_export.py", "tests/test_training_formats.py", "tests/contract/test_collisions.py"),
    ),
    "hybrid": Module(
        "flask_smg_history.backends.hybrid.", ("sqlite+redis",), ("tests/hybrid_backend", "tests/contract")
    ),
    # the SQL read that fills the hybrid's cache
    "sql_window": Module(
        "flask_smg_history.backends.sql.window.", ("sqlite+redis",), ("tests/hybrid_backend", "tests/contract")
    ),
    "file": Module("flask_smg_history.backends.file.", ("file",), FILE_TESTS),
    # parts of the file backend (1,901 mutants in all, about 100 min here), to run a few at a time:
    # its writes to disk, its record format, its folder tree, its operations and the backend class
    "file_storage": Module("flask_smg_history.backends.file.storage.", ("file",), FILE_TESTS),
    "file_codec": Module("flask_smg_history.backends.file.codec.", ("file",), FILE_TESTS),
    "file_layout": Module("flask_smg_history.backends.file.layout.", ("file",), FILE_TESTS),
    "file_operations": Module("flask_smg_history.backends.file.operations.", ("file",), FILE_TESTS),
    "file_backend": Module("flask_smg_history.backends.file.backend.", ("file",), FILE_TESTS),
}
#: Modules that are parts of another: run only when named.
PARTS = ("file_storage", "file_codec", "file_layout", "file_operations", "file_backend")
#: The modules run together by default, in this order: each group is one mutmut run.
GROUPS = (
    ("state", "portable", "schemas"),
    ("memory",),
    ("store",),
    ("search", "usage", "training"),
    ("sql_search", "sql_stats"),
    ("hybrid", "sql_window"),
    ("file",),
    ("file_storage", "file_codec", "file_layout", "file_operations", "file_backend"),
)


def mutmut(*args: str, modules: list[str] | None = None, capture: bool = False) -> str:
    """Run mutmut from the project root at the lowest CPU priority, on the
    backends and tests of ``modules`` (the union of theirs)."""
    env = dict(os.environ)
    if modules:
        backends = dict.fromkeys(b for m in modules for b in MODULES[m].backends)
        tests = dict.fromkeys(t for m in modules for t in MODULES[m].tests)
        env["SMG_HISTORY_TEST_BACKENDS"] = ",".join(backends)
        env["SMG_HISTORY_MUTATION_TESTS"] = os.pathsep.join(tests)  # tests/conftest.py deselects the rest
    env.pop("PYTHONPATH", None)  # the tests import the mutated copy in mutants/, never the checkout
    command = ["nice", "-n", "19", sys.executable, "-m", "mutmut", *args]
    result = subprocess.run(command, cwd=ROOT, env=env, text=True, capture_output=capture, check=False)
    if result.returncode != 0:
        sys.exit(f"mutmut {' '.join(args)} failed with exit code {result.returncode}")
    return result.stdout if capture else ""


def results() -> dict[str, Counter[str]]:
    """Outcome counts per module, from ``mutmut results``."""
    per_module: dict[str, Counter[str]] = {name: Counter() for name in MODULES}
    for line in mutmut("results", "--all", "true", capture=True).splitlines():
        name, sep, outcome = line.strip().rpartition(": ")
        if not sep:
            continue
        for module, prefix in MODULES.items():
            if name.startswith(prefix.prefix):
                per_module[module][outcome] += 1
    return per_module


def survivors(modules: list[str]) -> list[str]:
    """Mutants the tests did not notice (``mutmut show NAME`` prints one)."""
    prefixes = tuple(MODULES[m].prefix for m in modules)
    lines = (line.strip() for line in mutmut("results", capture=True).splitlines())
    return [line for line in lines if line.startswith(prefixes) and not line.endswith(DETECTED)]


#: Outcomes that mean the tests noticed the mutant: a failing test, or a test
#: that no longer finishes (mutmut stops it at a CPU-time limit).
DETECTED = ("killed", "timeout", "caught by type check")


def report(modules: list[str], minimum: float, counts: dict[str, Counter[str]], left: list[str]) -> int:
    total: Counter[str] = Counter()
    print(f"{'module':<10} {'mutants':>8} {'killed':>7} {'timeout':>8} {'survived':>9} {'other':>6} {'score':>7}")

    def row(name: str, c: Counter[str]) -> float:
        n, detected = sum(c.values()), sum(c[o] for o in DETECTED)
        other = n - detected - c["survived"]
        score = 100 * detected / n if n else 0.0
        print(f"{name:<10} {n:>8} {c['killed']:>7} {c['timeout']:>8} {c['survived']:>9} {other:>6} {score:>6.1f}%")
        return score

    for module in modules:
        total.update(counts[module])
        row(module, counts[module])
    score = row("all", total)
    if left:
        print("\nNot detected (explain each in docs/testing.md, or kill it with a test):")
        print("\n".join(f"  {line}" for line in left))
    if total["not checked"]:
        print(f"\n{total['not checked']} mutants were not checked: run without --report.")
        return 1
    if score < minimum:
        print(f"\nScore {score:.1f}% is below the minimum of {minimum:g}%.")
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "modules", nargs="*", metavar="module", help=f"{', '.join(MODULES)} (default: all but {', '.join(PARTS)})"
    )
    parser.add_argument("--report", action="store_true", help="print the last run's results only (its last group)")
    parser.add_argument("--minimum", type=float, default=90.0, help="least percent killed to pass")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once")
    args = parser.parse_args()
    modules = args.modules or [m for m in MODULES if m not in PARTS]
    unknown = sorted(set(modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown module {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    if args.report:
        ran = [m for m in modules if sum(results()[m].values())]
        return report(ran or modules, args.minimum, results(), survivors(ran or modules))
    # One mutmut run per group (GROUPS), each on its own backends and tests
    # from a fresh mutants/ copy; each group's results are read before the next.
    counts: dict[str, Counter[str]] = {}
    left: list[str] = []
    for group in GROUPS:
        chosen = [m for m in group if m in modules]
        if not chosen:
            continue
        print(f"== {', '.join(chosen)}", flush=True)
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
        prefixes = (f"{MODULES[m].prefix}*" for m in chosen)
        mutmut("run", "--max-children", str(args.jobs), *prefixes, modules=chosen)
        found = results()
        counts.update({m: found[m] for m in chosen})
        left += survivors(chosen)
        report(chosen, args.minimum, counts, [])  # this group's table now, in case a later group is stopped
        print(flush=True)
    return report(modules, args.minimum, counts, left)


if __name__ == "__main__":
    sys.exit(main())
