"""Fuzz ingest and print the outcome of every damaged recording, then the outcome table.

Runs the cases of ``tests/preprocessing/test_fuzz.py`` (damaged copies of the real
recordings in ``../shared/data`` through ``brainfm preprocess``) outside pytest, and prints
one line per case (outcome, seconds, reason) and the table of outcomes per source and
damage. Exit status 1 when any case is bad.

Usage::

    python bench/fuzz_ingest.py [--data ../shared/data] [--seed 20261206] [--more] [--jobs 2] [-k TEXT]

``--more`` adds the wider random sweep the test module marks slow.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load_fuzz_module():
    spec = importlib.util.spec_from_file_location("brainfm_test_fuzz", ROOT / "tests" / "preprocessing" / "test_fuzz.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the real recordings")
    parser.add_argument("--seed", type=int, default=None, help="seed of the case generator (default: the test module's)")
    parser.add_argument("--more", action="store_true", help="add the wider random sweep (the slow cases)")
    parser.add_argument("--jobs", type=int, default=None, help="cases run at the same time")
    parser.add_argument("-k", default=None, help="only cases whose id contains this text")
    args = parser.parse_args()
    fuzz = _load_fuzz_module()
    seed = fuzz.SEED if args.seed is None else args.seed
    cases = fuzz.fuzz_cases(seed)
    if args.more:
        cases += fuzz.sweep_cases(seed + 1)
    if args.k:
        cases = [c for c in cases if args.k in c.id]
    started, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as tmp:
        results = fuzz.run_cases(cases, args.data, Path(tmp), jobs=args.jobs or fuzz.JOBS)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
    bad = 0
    for case in cases:
        outcome, problems = fuzz.judge(case, results[case.id])
        bad += outcome == "bad"
        text = problems[0].splitlines()[-1] if problems else fuzz.reason(results[case.id])
        text = text.replace(f"{tmp}/{case.id}/in/", "")
        owner = f" [{case.owner}]" if case.owner else ""
        print(f"{case.id:<36} {outcome:<7}{owner} {results[case.id].get('seconds', 0):6.2f} s  {text[:160]}")
    print()
    print(fuzz.outcome_table(cases, results))
    print(f"{len(cases)} cases in {seconds:.1f} s wall, {cpu_s:.1f} s CPU, {args.jobs or fuzz.JOBS} jobs (seed {seed})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
