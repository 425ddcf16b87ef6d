"""``python -m bench <scenario> [options]``: run a benchmark scenario against real processes."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each scenario module has a docstring (its --help text), HELP (one line), add_arguments(parser),
# check_arguments(parser, args) and run(args) -> exit status.
SCENARIOS = ("fanout", "echo", "capacity", "storm")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure Ripple (and the Channels tutorial consumer) on loopback.",
    )
    scenarios = parser.add_subparsers(dest="scenario", required=True, metavar="scenario")
    for name in SCENARIOS:
        module = importlib.import_module(f"bench.{name}")
        sub = scenarios.add_parser(
            name,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(func=module.run, check=module.check_arguments, parser=sub)
    args = parser.parse_args(argv)
    args.check(args.parser, args)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
