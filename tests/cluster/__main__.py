"""`python -m tests.cluster up|down|run` (as root).

up    build the cluster and keep it until Ctrl-C or SIGTERM (then take it down); prints where things are
down  remove what an earlier run left behind (namespaces named ffc-*, their processes, temporary folders)
run   the fault tests (pytest tests/cluster; FRAMEFLEET_CLUSTER_LONG=1 for the long form)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "run"])
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (run)")
    args = parser.parse_args()
    from tests.cluster import harness

    if args.command == "down":
        removed = harness.remove_leftovers()
        print(f"removed {len(removed)} namespaces: {' '.join(removed) or '-'}")
        return 0
    if args.command == "run":
        argv = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "tests/cluster"]
        return subprocess.run([*argv, *args.pytest_args], check=False).returncode
    with harness.running() as cluster:
        lb = harness.HOSTS["lb"].address
        print(f"cluster up: API http://{lb}:{harness.LB_PORT} (from the ffc-client namespace)")
        print(
            f"  ip netns exec ffc-client curl -H 'X-API-Key: {cluster.key}' http://{lb}:{harness.LB_PORT}/v1/jobs"
        )
        print(f"  logs: {cluster.root / 'logs'}; Ctrl-C to take it down")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("taking the cluster down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
