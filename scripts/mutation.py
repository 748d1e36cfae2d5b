"""Mutation testing of the modules where a bug is a breach or a loss.

mutmut plants one small bug at a time (a flipped comparison, a dropped
argument, a changed string) in the modules named in ``[tool.mutmut]`` of
pyproject.toml, runs the tests that reach the changed function on the memory
backend, and counts the mutants the tests kill. docs/testing.md has the last
score and explains every mutant that survived.

    python scripts/mutation.py                   # every module (35 to 40 minutes on 2 shared cores)
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

ROOT = Path(__file__).resolve().parents[1]
#: Short names of the mutated modules, and their mutmut name prefixes.
MODULES = {
    "state": "flask_smg_history.state.",
    "store": "flask_smg_history.store.",
    "schemas": "flask_smg_history.schemas.",
    "portable": "flask_smg_history.portable.",
    "memory": "flask_smg_history.backends.memory.",
}


def mutmut(*args: str, capture: bool = False) -> str:
    """Run mutmut from the project root at the lowest CPU priority."""
    env = {**os.environ, "SMG_HISTORY_TEST_BACKENDS": "memory"}
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
            if name.startswith(prefix):
                per_module[module][outcome] += 1
    return per_module


def survivors(modules: list[str]) -> list[str]:
    """Mutants the tests did not notice (``mutmut show NAME`` prints one)."""
    prefixes = tuple(MODULES[m] for m in modules)
    lines = (line.strip() for line in mutmut("results", capture=True).splitlines())
    return [line for line in lines if line.startswith(prefixes) and not line.endswith(DETECTED)]


#: Outcomes that mean the tests noticed the mutant: a failing test, or a test
#: that no longer finishes (mutmut stops it at a CPU-time limit).
DETECTED = ("killed", "timeout", "caught by type check")


def report(modules: list[str], minimum: float) -> int:
    counts = results()
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
    left = survivors(modules)
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
    parser.add_argument("modules", nargs="*", metavar="module", help=f"{', '.join(MODULES)} (default: all)")
    parser.add_argument("--report", action="store_true", help="print the last run's results only")
    parser.add_argument("--minimum", type=float, default=90.0, help="least percent killed to pass")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once")
    args = parser.parse_args()
    modules = args.modules or list(MODULES)
    unknown = sorted(set(modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown module {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    if not args.report:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
        mutmut("run", "--max-children", str(args.jobs), *(f"{MODULES[m]}*" for m in modules))
    return report(modules, args.minimum)


if __name__ == "__main__":
    sys.exit(main())
