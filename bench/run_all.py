"""`make bench`: every benchmark, one after the other, printing ratios and percentiles.

`python -m bench.run_all --soak` also runs the soak (10,000 jobs, about 15 minutes on two cores).
"""

from __future__ import annotations

import argparse

from bench import (
    auto_ladder,
    cache,
    dispatch,
    e2e,
    ladder,
    ladder_scored,
    quality,
    quality_subsample,
    quality_target,
    throughput,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--soak", action="store_true", help="also run the 10,000-job soak")
    args = parser.parse_args(argv)
    e2e.main()
    cache.main()
    dispatch.main()
    throughput.main()
    quality.main()
    ladder.main()
    ladder_scored.main()
    quality_target.main([])
    quality_subsample.main([])
    auto_ladder.main([])
    if args.soak:
        from bench import soak

        soak.main()


if __name__ == "__main__":
    main()
