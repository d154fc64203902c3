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


def test_training_flags_default_to_what_the_workflow_itself_uses():
    """The schedule flags are declared once, from mdrec.training.schedule: each command's parser
    defaults are the defaults of the function it calls, so a run from Python and one from the
    command line train alike."""
    import inspect
    from dataclasses import fields

    from mdrec.training.run import TrainConfig
    from mdrec.workflows.branches import compare_branches
    from mdrec.workflows.pretrain import pretrain_run
    from mdrec.workflows.transfer import transfer_run

    def signature_defaults(fn):
        return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not p.empty}

    commands = dict(_commands(build_parser()))
    expected = {"mdrec train": {f.name: f.default for f in fields(TrainConfig)},
                "mdrec transfer": signature_defaults(transfer_run),
                "mdrec compare-branches": signature_defaults(compare_branches),
                "mdrec pretrain": signature_defaults(pretrain_run)}
    checked = 0
    for command, defaults in expected.items():
        parsed = {a.dest: a.default for a in commands[command]._actions}
        for key in ("model", "epochs", "batch_size", "learning_rate", "patience", "seed", "checkpoint_every",
                    "adapter_dim"):
            if key in defaults and key in parsed and parsed[key] is not None:
                assert parsed[key] == defaults[key], (command, key, parsed[key], defaults[key])
                checked += 1
    assert checked >= 16
