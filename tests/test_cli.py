"""Every subcommand's help, walked: the rule each option of ``headrace`` must follow.

The rule, for every parser under ``headrace`` (``serve``, ``run``, ``bench pipeline``...):
- every option and positional has help text;
- an option that takes a value, unless required, says its default in that text: the word
  "default", e.g. ``help="... (default %(default)s)"`` or ``"(default: none)"``; flags that
  take no value (store_true, count) need only the help;
- no reST markup (backticks) in any help or description;
- ``-v`` is accepted after the subcommand too.
"""

from __future__ import annotations

import argparse

import pytest

from headrace.cli import build_parser, main, plain_text, subcommand_parsers

PARSER = build_parser()
PARSERS = dict(subcommand_parsers(PARSER))


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        action
        for action in parser._actions
        if not isinstance(action, (argparse._HelpAction, argparse._VersionAction))
        and not isinstance(action, argparse._SubParsersAction)
    ]


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    return parser._get_formatter()._expand_help(action) if action.help else ""


def _name(action: argparse.Action) -> str:
    return "/".join(action.option_strings) or str(action.metavar or action.dest)


def test_the_walk_finds_every_subcommand() -> None:
    assert {"headrace serve", "headrace run", "headrace bench pipeline"} <= set(PARSERS)
    assert {"headrace repo check", "headrace examples create"} <= set(PARSERS)


@pytest.mark.parametrize("prog", sorted(PARSERS))
def test_every_option_has_help_that_says_its_default(prog: str) -> None:
    parser = PARSERS[prog]
    problems = []
    for action in _options(parser):
        text = _help(parser, action)
        takes_value = action.nargs != 0 and action.option_strings and not action.required
        if not text.strip() or text == argparse.SUPPRESS:
            problems.append(f"{prog} {_name(action)}: no help text")
        elif takes_value and "default" not in text.lower():
            problems.append(
                f"{prog} {_name(action)}: help must say its default, "
                "e.g. '(default %(default)s)' or '(default: none)'"
            )
        if "`" in text:
            problems.append(f"{prog} {_name(action)}: reST backticks in help: {text!r}")
    if "`" in (parser.description or ""):
        problems.append(f"{prog}: reST backticks in the description")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("prog", sorted(PARSERS))
def test_help_renders_without_markup(prog: str) -> None:
    assert "`" not in PARSERS[prog].format_help()


def test_verbose_after_the_subcommand() -> None:
    leaves = [
        parser
        for parser in PARSERS.values()
        if not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
    ]
    assert leaves and all("-v" in parser._option_string_actions for parser in leaves)
    args = PARSER.parse_args(["serve", "-vv", "/some/repo"])
    assert (args.verbose, args.sub_verbose, args.repository) == (0, 2, "/some/repo")
    args = PARSER.parse_args(["-v", "repo", "check", "/r", "-v"])
    assert args.verbose + args.sub_verbose == 2


def test_verbose_after_the_subcommand_reaches_logging(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    seen: list[int] = []
    monkeypatch.setattr("headrace.cli.configure_logging", seen.append)
    main(["repo", "check", str(tmp_path / "missing"), "-v"])
    assert seen == [1]


def test_plain_text_drops_rest_markup() -> None:
    assert plain_text("``headrace run`` uses :func:`~a.b` and `x`") == "headrace run uses b and x"
