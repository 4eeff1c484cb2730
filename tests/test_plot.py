"""Loss plots: several runs on one PNG, against steps and wall-clock; bad inputs."""

from __future__ import annotations

import json

import pytest

from cs336.cli import main
from cs336.training.plot import plot_runs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_run(directory, scale=1.0, diverge=False):
    directory.mkdir(parents=True)
    records = []
    for step in range(0, 101, 10):
        loss = scale * (5.0 - step / 40)
        if diverge and step > 50:
            loss = None  # what the JSONL sink writes for a non-finite loss
        records.append({"step": step, "time": step * 0.1, "train_loss": loss})
        if step % 50 == 0:
            records.append({"step": step, "time": step * 0.1 + 0.05, "val_loss": loss})
    (directory / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return directory


def test_several_runs_on_one_png(tmp_path):
    a = fake_run(tmp_path / "lr=1e-3")
    b = fake_run(tmp_path / "lr=1e-1", scale=1.2, diverge=True)
    out = plot_runs([a, b / "metrics.jsonl"], tmp_path / "plots" / "loss.png", log_y=True)
    data = (tmp_path / "plots" / "loss.png").read_bytes()
    assert out.endswith("loss.png") and data.startswith(PNG_MAGIC) and len(data) > 10_000
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["loss.png"]


def test_cli(tmp_path, capsys):
    run = fake_run(tmp_path / "run")
    assert main(["plot", str(run), "--out", str(tmp_path / "x.png"), "--labels", "mine"]) == 0
    assert (tmp_path / "x.png").read_bytes().startswith(PNG_MAGIC)
    assert "x.png" in capsys.readouterr().out


def test_bad_inputs(tmp_path, capsys):
    run = fake_run(tmp_path / "run")
    out = tmp_path / "out.png"
    assert main(["plot", str(tmp_path / "missing"), "--out", str(out)]) == 1
    assert "no metrics file" in capsys.readouterr().err
    with pytest.raises(ValueError, match="got 2 labels for 1 runs"):
        plot_runs([run], out, labels=["a", "b"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(ValueError, match="no train_loss or val_loss"):
        plot_runs([tmp_path / "empty"], out)
    (tmp_path / "bad.jsonl").write_text('{"step": 1, "train_loss": 2}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not a JSON record"):
        plot_runs([tmp_path / "bad.jsonl"], out)
    with pytest.raises(ValueError, match="at least one run"):
        plot_runs([], out)
    assert not out.exists()


def test_missing_matplotlib_is_a_clear_error(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import raises ImportError
    with pytest.raises(RuntimeError, match="plotting needs matplotlib"):
        plot_runs([fake_run(tmp_path / "run")], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
