"""``python -m nnx_state COMMAND ...``: the package's commands.

``convert SRC DST``: a checkpoint from one format to another (Orbax,
flax msgpack, safetensors); ``python -m nnx_state convert --help``.
"""

from __future__ import annotations

import difflib
import sys

USAGE = "usage: python -m nnx_state convert SRC DST [--type RULE]... [--filter F]... [--max-shard-size SIZE]"


def main(argv: list[str]) -> int:
    from . import convert

    commands = {"convert": convert.main}
    if not argv:
        print(f"python -m nnx_state: no command given\n{USAGE}", file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help", "help"):
        print(f"{USAGE}\n\ncommands:\n  convert   a checkpoint from one format to another "
              "(python -m nnx_state convert --help)")
        return 0
    command = commands.get(argv[0])
    if command is None:
        close = difflib.get_close_matches(argv[0], commands, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        print(f"python -m nnx_state: unknown command {argv[0]!r}{hint}\n{USAGE}", file=sys.stderr)
        return 2
    return command(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
