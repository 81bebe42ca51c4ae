"""Run the simulated K210 board: `python -m deploy.isp.simboard --flash build/x/sim_flash.img [options]`."""

from __future__ import annotations

import sys
from pathlib import Path

from deploy.isp.simboard.options import from_namespace, parser
from deploy.isp.simboard.server import serve_simboard
from pipeline.errors import PipelineError


def main(argv: list[str] | None = None) -> int:
    namespace = parser().parse_args(argv)
    try:
        reason = serve_simboard(Path(namespace.flash), from_namespace(namespace), lambda url: print(url, flush=True))
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    print(f"simboard stopped: {reason}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
