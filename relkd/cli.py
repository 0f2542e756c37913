"""The one ``relkd`` console script: the parser is assembled from ``relkd/commands/`` (one module
per subcommand, each setting its handler as ``func``), and every refusal is one line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from relkd.commands import register_all
from relkd.commands.arguments import RelkdParser
from relkd.errors import RelkdError


def build_parser() -> argparse.ArgumentParser:
    parser = RelkdParser(
        prog="relkd",
        description="Distil LLM relevance judgements into small search relevance models.",
    )
    register_all(parser.add_subparsers(dest="cmd", required=True))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        # argparse cannot take positionals after an option that follows the first positional
        # (`relkd pipeline X.yaml --seeds 0,1 a.b=c`): late key=value overrides are overrides
        if (
            extra
            and hasattr(args, "overrides")
            and all("=" in e and not e.startswith("-") for e in extra)
        ):
            args.overrides = [*args.overrides, *extra]
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # --help (0) or a usage error, already printed on one line (2)
        return int(exc.code or 0)
    try:
        return int(args.func(args))
    except RelkdError as exc:
        print(f"relkd: error: {one_line(str(exc))}", file=sys.stderr)
        return 2


def one_line(message: str) -> str:
    """``message`` on one line: a wrapped third-party reason (a YAML parser's three-line
    position report) is joined with ``; `` so every refusal stays one ``relkd: error:`` line."""
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())


if __name__ == "__main__":
    sys.exit(main())
