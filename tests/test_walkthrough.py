"""The README's "Using it on your own log" walk-through, run as written (fewer epochs), in a fresh folder:
a README that drifts from the command line fails here."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path


from mdrec.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
FAST = {"train": ["--epochs", "1"], "ab": ["--bootstrap", "200"]}  # the only changes to the README's lines


def fenced_block(text: str, marker: str) -> str:
    """The fenced block right after ``<!-- marker -->``."""
    match = re.search(rf"<!-- {marker} -->\s*```\w*\n(.*?)```", text, re.S)
    assert match, f"README has no block marked {marker}"
    return match.group(1)


def commands(block: str) -> list[list[str]]:
    """The block's commands, continuation lines joined and comments dropped."""
    joined = block.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in joined.splitlines() if line.strip()]


def test_readme_walkthrough_runs_as_written(tmp_path, monkeypatch, capsys):
    text = README.read_text(encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my").mkdir()
    (tmp_path / "my" / "spec.yaml").write_text(fenced_block(text, "walkthrough-spec"))
    lines = commands(fenced_block(text, "walkthrough-commands"))
    assert [c[:2] for c in lines][:3] == [["mdrec", "data"], ["mdrec", "spec"], ["mdrec", "data"]]
    for argv in lines:
        assert argv[0] == "mdrec"
        assert main(argv[1:] + FAST.get(argv[1], [])) == 0, " ".join(argv)
    out = capsys.readouterr().out
    # What the README says you get.
    assert (tmp_path / "export" / "my_ctr" / "1" / "saved_model.pb").is_file()
    assert (tmp_path / "export" / "models.config").is_file()
    assert (tmp_path / "reports" / "my-compare" / "report.html").is_file()
    assert (tmp_path / "reports" / "my-ab" / "report.html").is_file()
    assert list((tmp_path / "runs" / "my" / "star" / "tensorboard" / "validation").glob("events.out.tfevents.*"))
    summary = json.loads((tmp_path / "reports" / "my-ab" / "summary.json").read_text())
    assert summary and "verdict" in json.dumps(summary)
    assert "baseline" in out
