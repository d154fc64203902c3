"""--help of every command shows every option's default."""
from __future__ import annotations

import argparse

from mdrec.cli import build_parser


def _commands(parser: argparse.ArgumentParser, name: str = "mdrec"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                yield from _commands(child, f"{name} {sub}")


def test_every_default_is_in_help():
    missing = []
    commands = list(_commands(build_parser()))
    assert len(commands) > 20
    for name, parser in commands:
        formatter = parser._get_formatter()
        for action in parser._actions:
            default = action.default
            if not action.option_strings or default is None or default is False or default == [] \
                    or default == argparse.SUPPRESS:
                continue
            shown = formatter._format_action(action)
            if "default" not in shown:
                missing.append(f"{name} {action.option_strings[0]}")
    assert not missing, missing


def test_train_help_states_the_numbers(capsys):
    parser = dict(_commands(build_parser()))["mdrec train"]
    text = " ".join(parser.format_help().split())
    for flag, value in (("--epochs", "10"), ("--batch-size", "1024"), ("--learning-rate", "0.001"),
                        ("--patience", "2"), ("--seed", "0"), ("--model", "star")):
        assert f"{flag} " in text and f"(default: {value})" in text, flag
    assert "Recall@50 for two_tower" in text  # what early stopping watches for a retrieval run
