"""`python -m pgjobs.enrichment.sandbox [--host H] [--port P]`: run the sandbox in the foreground."""

from __future__ import annotations

import argparse

from pgjobs.enrichment.sandbox.lifecycle import DEFAULT_HOST, DEFAULT_PORT, serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pgjobs.enrichment.sandbox", description=__doc__)
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    args = parser.parse_args(argv)
    serve(args.host, args.port)


if __name__ == "__main__":
    main()
