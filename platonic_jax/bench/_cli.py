"""absl entry points as the scripts promise them: --help exits 0, errors are one line.

absl's own `--help` exits with status 1, and an `app.UsageError` raised in
`main` prints the whole module docstring before the message. `run_script`
keeps absl's flag parsing and validators and changes only those two.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable, Sequence

from absl import app

_HELP = frozenset({"-h", "-help", "--help", "-?", "--helpshort", "-helpshort", "--helpfull",
                   "-helpfull"})


def _parse_flags(argv: Sequence[str]) -> list[str]:
  """absl's parser (one-line `FATAL Flags parsing error`, exit 1); help goes to stdout, exit 0."""
  arguments = list(argv[1:])
  if "--" in arguments:
    arguments = arguments[:arguments.index("--")]
  if any(arg in _HELP for arg in arguments):
    full = any(arg.lstrip("-") == "helpfull" for arg in arguments)
    app.usage(shorthelp=not full, writeto_stdout=True, exitcode=0)
  return app.parse_flags_with_usage(list(argv))


def _one_line_usage_errors(main: Callable[[list[str]], object]):
  @functools.wraps(main)
  def wrapped(argv):
    try:
      return main(argv)
    except app.UsageError as error:
      sys.stderr.write(f"FATAL {error}\nPass --help for usage.\n")
      sys.exit(error.exitcode)
  return wrapped


def run_script(main: Callable[[list[str]], object]) -> None:
  """`app.run(main)` with `--help` exiting 0 and `app.UsageError` as one line, exit 1.

  `main(argv)` receives the arguments left after the flags (`argv[0]` is the
  program); it should raise `app.UsageError` for any it does not take.
  """
  app.run(_one_line_usage_errors(main), flags_parser=_parse_flags)


def reject_arguments(argv: Sequence[str]) -> None:
  """Raises `app.UsageError` naming positional arguments a flags-only script was given."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected positional arguments {list(argv[1:])}; this script "
                         "takes flags only (--help lists them).")

