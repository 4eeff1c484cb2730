"""cs336._files: atomic file and folder writes, the partial-output registry the CLI's
Ctrl-C handler empties, Ctrl-C held back inside a folder swap, and the output checks."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from cs336 import _files
from cs336._files import atomic_dir, atomic_open, check_output, remove_partial_outputs, scratch_dir


def everything(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_atomic_dir_builds_beside_and_replaces_the_whole_folder(tmp_path):
    out = tmp_path / "sub" / "tok"
    with atomic_dir(out) as tmp:
        assert tmp.parent == out.parent and tmp.name.startswith(".tok.")
        (tmp / "a.txt").write_text("1")
        (tmp / "old.txt").write_text("stale")
    assert everything(out) == ["a.txt", "old.txt"]
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("2")
    assert everything(tmp_path / "sub") == ["tok", "tok/a.txt"]  # nothing stale, no temp
    assert (out / "a.txt").read_text() == "2"
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~_files._umask())


def test_a_failed_atomic_dir_leaves_the_old_folder_and_no_temp(tmp_path):
    out = tmp_path / "tok"
    out.mkdir()
    (out / "a.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("new")
        raise RuntimeError("boom")
    assert everything(tmp_path) == ["tok", "tok/a.txt"] and (out / "a.txt").read_text() == "old"


def test_partial_outputs_are_registered_until_done_and_removed_on_demand(tmp_path):
    with (
        pytest.raises(RuntimeError, match="stop"),
        atomic_open(tmp_path / "f.bin") as f,
        atomic_dir(tmp_path / "d") as d,
        scratch_dir(tmp_path / "x.npy") as s,
    ):
        f.write(b"half")
        (d / "part").write_text("half")
        (s / "x.npy").write_text("half")
        assert len(_files._partial) == 3 and len(everything(tmp_path)) == 5
        remove_partial_outputs()  # what Ctrl-C in the cs336 command does before it exits
        assert everything(tmp_path) == [] and not _files._partial
        raise RuntimeError("stop")
    assert everything(tmp_path) == []


def test_ctrl_c_between_the_two_renames_of_a_swap_waits_for_them(tmp_path, monkeypatch):
    out = tmp_path / "tok"
    out.mkdir()
    (out / "a.txt").write_text("old")
    real_replace = os.replace
    calls = []

    def replace_then_interrupt(src, dst):
        real_replace(src, dst)
        calls.append(dst)
        if len(calls) == 1:  # the old folder is aside, the new one not yet in place
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(os, "replace", replace_then_interrupt)
    with pytest.raises(KeyboardInterrupt), atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("new")
    assert (out / "a.txt").read_text() == "new" and everything(tmp_path) == ["tok", "tok/a.txt"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_check_output(tmp_path):
    (tmp_path / "in.txt").write_text("x")
    (tmp_path / "out.bin").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "vocab.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "new" / "x.bin", overwrite=False)
    check_output(tmp_path / "empty", overwrite=False, folder=True)
    check_output(tmp_path / "out.bin", overwrite=True, inputs=[tmp_path / "in.txt"])
    check_output(tmp_path / "full", overwrite=True, folder=True, replaceable=["vocab.json"])
    cases = [
        (dict(path=tmp_path / "out.bin", overwrite=False), "already exists; pass --overwrite"),
        (dict(path=tmp_path / "in.txt", overwrite=True, inputs=[tmp_path / "in.txt"]),
         "is the input"),
        (dict(path=tmp_path, overwrite=True, folder=True, inputs=[tmp_path / "in.txt"]),
         "holds the input"),
        (dict(path=tmp_path / "full", overwrite=True, folder=True, replaceable=["merges.txt"]),
         "holds 'vocab.json', which is not an output of this command"),
        (dict(path=tmp_path / "out.bin", overwrite=True, folder=True), "is a file; give a folder"),
        (dict(path=tmp_path / "full", overwrite=True), "is a folder; give a file name"),
        (dict(path=tmp_path / "in.txt" / "x", overwrite=False), "in.txt is a file"),
    ]  # fmt: skip
    for kwargs, message in cases:
        with pytest.raises((ValueError, FileExistsError), match=message):
            check_output(kwargs.pop("path"), **kwargs)
    link = tmp_path / "link.bin"
    link.symlink_to(tmp_path / "in.txt")
    with pytest.raises(ValueError, match="is the input"):
        check_output(link, overwrite=True, inputs=[tmp_path / "in.txt"])


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_full_disk_names_the_output_and_leaves_nothing(tmp_path, kind):
    """A write that fails without naming a file (ENOSPC from write(2)) comes out naming
    the output the user asked for, and the temporary file or folder is gone."""
    import errno

    out = tmp_path / ("x.bin" if kind == "file" else "tok")
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with pytest.raises(OSError) as caught:
        if kind == "file":
            with atomic_open(out):
                raise full
        else:
            with atomic_dir(out):
                raise full
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(out)
    assert str(out) in str(caught.value) and "No space left" in str(caught.value)
    assert everything(tmp_path) == []
    # a file of the folder being built is named where the folder goes
    with (
        pytest.raises(OSError) as caught,
        atomic_dir(tmp_path / "tok") as building,
        atomic_open(building / "vocab.json"),
    ):
        raise full
    assert caught.value.filename == str(tmp_path / "tok" / "vocab.json")
    assert everything(tmp_path) == []
    # an error that names its own file, or is not an OS error, passes unchanged
    for other in (FileNotFoundError(errno.ENOENT, "gone", "elsewhere"), ValueError("bad")):
        with pytest.raises(type(other)) as caught2, atomic_open(tmp_path / "y"):
            raise other
        assert caught2.value is other
