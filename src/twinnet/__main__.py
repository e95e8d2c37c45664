"""``python -m twinnet`` and the ``twinnet`` command: the command line of ``twinnet.cli``, with a Ctrl-C
while that module loads ending as one line and status 130, as it does once the command has begun."""

import sys


def run() -> int:
    try:
        from twinnet.cli import main
    except KeyboardInterrupt:
        print("twinnet: interrupted; nothing was written", file=sys.stderr)
        return 130
    return main()


if __name__ == "__main__":
    raise SystemExit(run())
