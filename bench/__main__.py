"""``python -m bench <scenario> [options]``: run a benchmark scenario against real processes."""

from __future__ import annotations

import argparse
import sys

from . import fanout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure Ripple against the Channels tutorial consumer on loopback.",
    )
    scenarios = parser.add_subparsers(dest="scenario", required=True, metavar="scenario")
    fan = scenarios.add_parser(
        "fanout",
        help="one publisher and N subscribers per room: deliveries/s, latency, CPU µs per delivery",
        description=fanout.__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    fanout.add_arguments(fan)
    fan.set_defaults(func=fanout.run, check=fanout.check_arguments, parser=fan)
    args = parser.parse_args(argv)
    args.check(args.parser, args)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
