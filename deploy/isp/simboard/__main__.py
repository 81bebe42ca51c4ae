"""Run the simulated K210 board: `python -m deploy.isp.simboard --flash build/x/sim_flash.img [options]`."""

from __future__ import annotations

import sys
from pathlib import Path

from deploy.isp.simboard.options import from_namespace, parser
from deploy.isp.simboard.server import serve_simboard


def main(argv: list[str] | None = None) -> int:
    namespace = parser().parse_args(argv)
    reason = serve_simboard(Path(namespace.flash), from_namespace(namespace), lambda url: print(url, flush=True))
    print(f"simboard stopped: {reason}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
