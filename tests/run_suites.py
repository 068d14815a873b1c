"""`make test`: the whole suite on SQLite, then the database-backed tests again on PostgreSQL.

Prints one closing line, 'N passed, N failed', and exits non-zero if any suite failed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

SUITES: list[tuple[str, list[str]]] = [
    ("sqlite", ["tests"]),
    # Unit, ffmpeg-only media and browser playback tests touch no database; the rest runs again on PostgreSQL.
    # The cluster runs its own PostgreSQL whatever the suite's database, so it runs once.
    (
        "postgres",
        [
            "tests",
            "--ignore=tests/unit",
            "--ignore=tests/media",
            "--ignore=tests/players",
            "--ignore=tests/cluster",
        ],
    ),
]
SUMMARY = re.compile(r"(\d+) (passed|failed|error|errors)")


def run(db: str, args: list[str]) -> tuple[int, int, int]:
    print(f"\n=== test suite on {db} ===", flush=True)
    env = {**os.environ, "FRAMEFLEET_TEST_DB": db}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--durations=10",
            *args,
            *sys.argv[1:],
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    last = ""
    for line in proc.stdout:
        sys.stdout.write(line)
        if line.strip():
            last = line
    code = proc.wait()
    counts = {kind: int(n) for n, kind in SUMMARY.findall(last)}
    failed = counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)
    if code != 0 and failed == 0:
        failed = 1  # pytest itself failed (collection error, no tests, crash)
    return code, counts.get("passed", 0), failed


def main() -> int:
    passed = failed = 0
    worst = 0
    for db, args in SUITES:
        code, ok, bad = run(db, args)
        passed, failed, worst = passed + ok, failed + bad, max(worst, code)
    print(f"\n{passed} passed, {failed} failed")
    return 0 if worst == 0 and failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
