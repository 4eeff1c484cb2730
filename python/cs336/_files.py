"""Output files that never destroy what was there: atomic file and folder writes, the checks
an output location must pass, and the partial outputs an interrupted command removes.

Every file cs336 writes is built under a temporary name beside its target and renamed into
place at the end (:func:`atomic_open`); a folder of several files is built as a temporary
folder beside its target and renamed likewise (:func:`atomic_dir`). Until the rename, the
temporary path is listed in a registry that :func:`remove_partial_outputs` empties: the
``cs336`` command calls it when Ctrl-C stops it at once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

PathLike = str | os.PathLike[str]

# Temporary outputs being built (path -> is a folder), removed by remove_partial_outputs.
_partial: dict[str, bool] = {}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_partial_outputs() -> None:
    """Remove every temporary file and folder that :func:`atomic_open` and :func:`atomic_dir`
    are still building (for a Ctrl-C handler that ends the process at once)."""
    for path, is_dir in list(_partial.items()):
        for _ in range(3):  # again if another thread made a file in the folder meanwhile
            with contextlib.suppress(OSError):
                if is_dir:
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
            if not os.path.lexists(path):
                break
        _partial.pop(path, None)


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on success it is flushed, synced
    and renamed over ``path`` (readers see the old file or the complete new one), with the
    usual permissions (``0o666 & ~umask``); on an exception it is removed. Creates the
    parent directory.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a" / "x.txt"
    >>> with atomic_open(p, "w") as f:
    ...     _ = f.write("hi")
    >>> p.read_text()
    'hi'
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    _partial[tmp] = False
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        named = _with_path(e, path)
        if named is e:
            raise
        raise named from e
    finally:
        _partial.pop(tmp, None)


def _with_path(e: BaseException, path: PathLike, building: Path | None = None) -> BaseException:
    """``e``, or for an OS error that names no file (a write into a full disk, say) the
    same error naming the output ``path`` the user gave; one that names a file in the
    temporary folder ``building`` names it where ``path`` will have it."""
    if not isinstance(e, OSError) or e.errno is None:
        return e
    if e.filename is None:
        return OSError(e.errno, e.strerror, os.fspath(path))
    inside = building is not None and os.fspath(e.filename).startswith(f"{building}{os.sep}")
    if inside:
        where = os.path.join(os.fspath(path), os.path.relpath(os.fspath(e.filename), building))
        return OSError(e.errno, e.strerror, where)
    return e


@contextlib.contextmanager
def atomic_dir(path: PathLike) -> Iterator[Path]:
    """Yield a new temporary folder beside ``path`` to fill; when the block succeeds it is
    renamed to ``path`` (with the usual permissions, ``0o777 & ~umask``), replacing an
    existing ``path`` (moved aside, then removed); on an exception it is removed and
    ``path`` is left as it was. Creates the parent directory.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "tok"
    >>> with atomic_dir(p) as tmp:
    ...     _ = (tmp / "a.txt").write_text("hi")
    >>> sorted(x.name for x in p.iterdir())
    ['a.txt']
    """
    out = Path(os.path.realpath(path))  # a symlink to a folder: replace the folder it names
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    _partial[str(tmp)] = True
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        _replace_dir(tmp, out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        named = _with_path(e, path, tmp)
        if named is e:
            raise
        raise named from e
    finally:
        _partial.pop(str(tmp), None)


@contextlib.contextmanager
def scratch_dir(near: PathLike | None = None) -> Iterator[Path]:
    """Yield a new temporary folder in the folder of ``near`` (created when missing; the
    system's temporary folder without it), removed when the block ends, however it ends
    (also by Ctrl-C in the ``cs336`` command): for outputs that other code writes and that
    are moved into place from it, and for intermediate files."""
    if near is None:
        tmp = Path(tempfile.mkdtemp(prefix="cs336-"))
    else:
        parent = Path(os.path.abspath(near)).parent
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{Path(near).name}.", suffix=".tmp"))
    _partial[str(tmp)] = True
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        _partial.pop(str(tmp), None)


def _replace_dir(tmp: Path, out: Path) -> None:
    """Rename the finished folder ``tmp`` to ``out``. An existing ``out`` is renamed aside
    first and removed after; Ctrl-C between the two renames is held back until both are
    done, and a failed second rename puts the old folder back."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        os.replace(tmp, out)  # an empty folder is replaced in one rename
        return
    aside = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
    _partial[str(aside)] = True  # the old content once moved there: removed below, or by Ctrl-C
    try:
        with _interrupts_held():
            os.replace(out, aside / "previous")
            try:
                os.replace(tmp, out)
            except BaseException:
                os.replace(aside / "previous", out)
                raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)
        _partial.pop(str(aside), None)


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """SIGINT and SIGTERM that arrive inside the block take effect when it ends (main thread
    only: elsewhere the block runs as it is)."""
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in signals}
    if threading.current_thread() is not threading.main_thread() or None in previous.values():
        yield
        return
    caught: list[int] = []
    for s in signals:
        signal.signal(s, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)


# ---------------------------------------------------------------------------------------------
# Output locations


def _within(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or inside it (both resolved)."""
    return path == folder or folder in path.parents


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_output(
    path: PathLike,
    *,
    overwrite: bool,
    inputs: Iterable[PathLike] = (),
    folder: bool = False,
    replaceable: Collection[str] | None = None,
    name: str = "--out",
) -> None:
    """Refuse an output location where writing would destroy something, before any work:

    - an existing file, or an existing non-empty folder, unless ``overwrite``;
    - one of the ``inputs`` (the same file, or for a ``folder`` output a folder that holds
      one), even with ``overwrite``;
    - a folder where a file is to be written, a file where a ``folder`` is to be, a path
      below a file;
    - for a ``folder`` output, with ``replaceable`` given, an existing folder holding any
      entry whose name is not in ``replaceable`` (replacing it would delete that entry).

    ``name`` is how messages call the location (the command-line flag).

    Raises:
        FileExistsError: the location exists (named, with what to do).
        ValueError: the location is an input, or of the wrong kind.
    """
    out = Path(path)
    resolved = Path(os.path.realpath(out))
    for ancestor in resolved.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise ValueError(f"{name} {out}: cannot create it, {ancestor} is a file")
            break
    for given in inputs:
        source = Path(given)
        if not source.exists():
            continue
        if _same_file(source, out) or (
            folder and _within(Path(os.path.realpath(source)), resolved)
        ):
            what = "is" if _same_file(source, out) else "holds"
            raise ValueError(
                f"{name} {out} {what} the input {source}: writing there would destroy it; "
                "choose another output location"
            )
    if not out.exists():
        return
    if folder and not out.is_dir():
        raise ValueError(f"{name} {out} is a file; give a folder (new or empty)")
    if not folder and out.is_dir():
        raise ValueError(f"{name} {out} is a folder; give a file name")
    if folder and not any(out.iterdir()):
        return
    if not overwrite:
        what = "folder" if folder else "file"
        raise FileExistsError(
            f"{name} {out}: the {what} already exists; pass --overwrite to replace it"
        )
    if folder and replaceable is not None:
        others = sorted(p.name for p in out.iterdir() if p.name not in replaceable)
        if others:
            raise ValueError(
                f"{name} {out} holds {others[0]!r}, which is not an output of this command: "
                "--overwrite replaces the whole folder, so choose a new or empty folder"
            )
