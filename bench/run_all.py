"""`make bench`: every benchmark, one after the other, printing ratios and percentiles."""

from __future__ import annotations

from bench import dispatch, e2e, throughput


def main() -> None:
    e2e.main()
    dispatch.main()
    throughput.main()


if __name__ == "__main__":
    main()
