"""The ``headrace`` command.

Subcommands live with the code they drive. Each module in :data:`PLUGINS` exposes
``register(subparsers) -> None``; it adds its parsers and sets ``func`` on them with
``parser.set_defaults(func=handler)`` where ``handler(args: argparse.Namespace) -> int`` returns
the exit code. A plugin module that does not exist yet is skipped; any other import error is
raised, so a broken plugin is never hidden. Logging is configured here and nowhere else.

Once registered, every subcommand gets ``-v`` after its name too, and help and descriptions
lose their reST markup (they are often module docstrings). ``tests/test_cli.py`` holds every
option to one rule: help text that says the default of anything that takes a value.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import shutil
import sys
import textwrap
from collections.abc import Iterator, Sequence

from headrace import __version__
from headrace.errors import HeadraceError

__all__ = ["PLUGINS", "build_parser", "main", "plain_text", "subcommand_parsers"]

#: Modules that add subcommands (``serve``, ``bench``, ``run``...), imported lazily.
PLUGINS: tuple[str, ...] = (
    "headrace.repository.cli",
    "headrace.server.cli",
    "headrace.server.ray_actors_cli",
    "headrace.bench.cli",
    "headrace.batch.cli",
)

logger = logging.getLogger("headrace")


def build_parser(plugins: Sequence[str] = PLUGINS) -> argparse.ArgumentParser:
    """The top-level parser with every available plugin's subcommands registered."""
    parser = argparse.ArgumentParser(
        prog="headrace",
        description="Keep accelerators fed: serve, run and benchmark trained models.",
    )
    parser.add_argument("--version", action="version", version=f"headrace {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in plugins:
        module = _import_plugin(name)
        if module is not None:
            module.register(subparsers)
    _polish(parser)
    return parser


def subcommand_parsers(
    parser: argparse.ArgumentParser,
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every parser under ``parser``, nested ones included, with its command line prefix."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases share a parser
                yield child.prog, child
                yield from subcommand_parsers(child)


def _polish(parser: argparse.ArgumentParser) -> None:
    """What every subcommand gets: help without reST markup (descriptions are module
    docstrings), and ``-v`` after the subcommand as well as before it."""
    for _, child in [(parser.prog, parser), *subcommand_parsers(parser)]:
        child.description = _refill(plain_text(child.description))
        for action in child._actions:
            action.help = plain_text(action.help)
        is_leaf = not any(isinstance(a, argparse._SubParsersAction) for a in child._actions)
        if is_leaf and child is not parser and "-v" not in child._option_string_actions:
            child.add_argument(
                "-v",
                "--verbose",
                dest="sub_verbose",
                action="count",
                default=0,
                help="more logging (-v info, -vv debug), as before the subcommand",
            )


def _refill(text: str | None) -> str | None:
    """Paragraphs refilled to the terminal (markup removal leaves ragged lines); indented
    blocks (examples, tables) stay as written."""
    if not text:
        return text
    width = max(40, min(shutil.get_terminal_size().columns - 2, 98))
    paragraphs = []
    for paragraph in text.strip().split("\n\n"):
        lines = paragraph.splitlines()
        if any(line.startswith((" ", "|", "-")) for line in lines):
            paragraphs.append(paragraph)
        else:
            paragraphs.append(textwrap.fill(" ".join(lines), width))
    return "\n\n".join(paragraphs)


def plain_text(text: str | None) -> str | None:
    """reST markup as a terminal shows it: ``x``, `x` and :role:`x` become x (and
    :role:`~a.b` becomes b, as Sphinx shows it)."""
    if not text:
        return text
    text = re.sub(
        r":[\w:.-]+:`(~?)([^`]+)`",
        lambda m: m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2),
        text,
    )
    return re.sub(r"`{1,2}([^`]+)`{1,2}", r"\1", text)


def _import_plugin(name: str):  # type: ignore[no-untyped-def]
    """The plugin module, or None only when that very module is not there yet."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            logger.debug("subcommand module %s is not available", name)
            return None
        raise


def configure_logging(verbosity: int) -> None:
    """WARNING by default, INFO with -v, DEBUG with -vv; messages go to stderr."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (2 for usage errors, 1 for failures)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose + getattr(args, "sub_verbose", 0))
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args))
    except HeadraceError as exc:
        print(f"headrace: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
