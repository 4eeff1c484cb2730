"""Resumable downloads over HTTP(S): :func:`download`.

A file is fetched into ``DIR/.NAME.part`` and renamed to ``DIR/NAME`` only once it is
complete, so the final name never holds a partial file, and an existing final file is
never fetched again. An interrupted download (dropped connection, Ctrl-C, a crash) keeps
its ``.part`` file and continues where it stopped, with an HTTP ``Range`` request, when
the command runs again; within one run, failed connections are retried with exponential
backoff. A ``.gz`` file is decompressed while it streams in (into ``DIR/.NAME.part`` of
the name without ``.gz``), and checked against its gzip trailer (CRC-32 and length); the
size of every download is checked against the server's ``Content-Length``.

Every failure raises :class:`DownloadError` (an ``OSError``) with a one-line message that
says what went wrong and what to do. Uses only the standard library's ``urllib`` and
``zlib`` (and tqdm for the progress bar).
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["DownloadError", "download", "file_name"]

CHUNK = 1 << 20
# HTTP statuses worth another try (the server or a proxy may recover).
RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}


class DownloadError(OSError):
    """A download failed; the message says why in one line."""


def file_name(url: str) -> str:
    """The file name a URL downloads to: the last part of its path, unquoted.

    >>> file_name("https://example.org/a/owt_valid.txt.gz?download=true")
    'owt_valid.txt.gz'
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DownloadError(f"not an http(s) URL: {url!r}")
    name = urllib.parse.unquote(parts.path.rstrip("/").rsplit("/", 1)[-1])
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise DownloadError(f"cannot tell a file name from the URL {url!r}")
    return name


@dataclass
class _Remote:
    """What the server said about the file: its total size and validator, if given."""

    total: int | None
    etag: str | None


class _CorruptGzip(Exception):
    pass


class _Gunzip:
    """Streaming gzip decompression into a file; zlib checks each member's CRC-32 and
    length (``wbits=31``), :meth:`finish` that the stream ends where a member ends."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.inflate = zlib.decompressobj(wbits=31)
        self.members = 0
        self.open = False

    def feed(self, data: bytes) -> None:
        while data:
            self.open = True
            try:
                self.out.write(self.inflate.decompress(data))
            except zlib.error as e:
                raise _CorruptGzip(str(e)) from None
            if not self.inflate.eof:
                return
            # A member ended; another may follow (gzip files may be concatenated).
            self.members += 1
            self.open = False
            data = self.inflate.unused_data
            self.inflate = zlib.decompressobj(wbits=31)

    def finish(self) -> None:
        if self.open or not self.members:
            raise _CorruptGzip("the gzip stream is truncated")


class _Sink:
    """Where the bytes go: appended to ``part`` and, for a ``.gz``, decompressed into
    ``text_part`` as they arrive."""

    def __init__(self, part: Path, text_part: Path | None) -> None:
        self.part = part
        self.text_part = text_part
        with _writing(part):
            self.file = open(part, "ab")  # noqa: SIM115 (closed by close())
            self.text = open(text_part, "wb") if text_part else None  # noqa: SIM115
        self.gunzip = _Gunzip(self.text) if self.text else None
        if self.gunzip and self.size:
            # Resuming: decompress what an earlier run downloaded.
            with open(part, "rb") as done, _writing(self.text_part or part):
                while chunk := done.read(CHUNK):
                    self.gunzip.feed(chunk)

    @property
    def size(self) -> int:
        if not self.file.closed:
            return self.file.tell()
        return self.part.stat().st_size if self.part.exists() else 0

    def restart(self) -> None:
        with _writing(self.part):
            self.file.truncate(0)
            self.file.seek(0)
            if self.text:
                self.text.truncate(0)
                self.text.seek(0)
                self.gunzip = _Gunzip(self.text)

    def write(self, chunk: bytes) -> None:
        with _writing(self.part):
            self.file.write(chunk)
        if self.gunzip:
            with _writing(self.text_part or self.part):
                self.gunzip.feed(chunk)

    def close(self, complete: bool) -> None:
        """Flush and close (once); when ``complete``, sync and check the gzip stream's end."""
        for f, path in ((self.file, self.part), (self.text, self.text_part)):
            if f is None or f.closed:
                continue
            with _writing(path or self.part):
                f.flush()
                if complete:
                    os.fsync(f.fileno())
                f.close()
        if complete and self.gunzip:
            self.gunzip.finish()


def _meta_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _read_meta(part: Path, url: str) -> dict[str, Any]:
    """The saved state of an earlier attempt at ``url`` (empty when none or another URL)."""
    try:
        meta = json.loads(_meta_path(part).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) and meta.get("url") == url else {}


def _write_meta(part: Path, url: str, remote: _Remote) -> None:
    _meta_path(part).write_text(
        json.dumps({"url": url, "total": remote.total, "etag": remote.etag}), encoding="utf-8"
    )


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes START-END/TOTAL`` (or ``bytes */TOTAL``) -> (START, TOTAL); None where absent."""
    m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def _strong_etag(value: str | None) -> str | None:
    return value if value and not value.startswith("W/") else None


def _open(url: str, offset: int, etag: str | None, timeout: float) -> Any:
    headers = {"Accept-Encoding": "identity", "User-Agent": "cs336-download"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if etag:
            headers["If-Range"] = etag
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _describe(e: BaseException) -> str:
    """A short description of a network error."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    reason = e.reason if isinstance(e, urllib.error.URLError) else e
    if isinstance(reason, socket.gaierror):
        return "host not found (no network, or a wrong host name)"
    if isinstance(reason, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason) or type(reason).__name__


def _sink_error(e: OSError, path: Path) -> DownloadError:
    if e.errno == errno.ENOSPC:
        return DownloadError(
            f"no space left on the device while writing {path}; free some space and run the "
            "same command again to resume"
        )
    if isinstance(e, PermissionError):
        return DownloadError(f"cannot write {path}: permission denied")
    return DownloadError(f"cannot write {path}: {e.strerror or e}")


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Turn OSErrors of writing ``path`` into one-line DownloadErrors."""
    try:
        yield
    except DownloadError:
        raise
    except OSError as e:
        raise _sink_error(e, path) from None


def download(
    url: str,
    directory: str | os.PathLike[str],
    *,
    keep_gz: bool = False,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    show_progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Download ``url`` into ``directory`` (created when missing) and return the final
    path: ``directory/NAME`` (see :func:`file_name`), or for a ``.gz`` file the
    decompressed ``NAME`` without ``.gz`` (the ``.gz`` itself is kept too with
    ``keep_gz``). An existing final file is returned as it is.

    ``retries`` failed connections in a row are retried, waiting ``backoff`` seconds, then
    twice that, and so on; progress resets the count. ``log`` gets one-line notes
    (resuming, retrying; stderr by default). Raises :class:`DownloadError`.
    """
    say = log or (lambda line: print(line, file=sys.stderr))
    name = file_name(url)
    gz = name.endswith(".gz")
    directory = Path(directory)
    final = directory / (name[:-3] if gz else name)
    kept_gz = directory / name if gz and keep_gz else None
    if final.exists():
        say(f"{final} is already there (delete it to download it again)")
        return final
    with _writing(directory):
        directory.mkdir(parents=True, exist_ok=True)
    part = directory / f".{name}.part"
    text_part = directory / f".{final.name}.part" if gz else None
    meta = _read_meta(part, url)
    if not meta:
        part.unlink(missing_ok=True)
    remote = _Remote(meta.get("total"), meta.get("etag"))
    sink = None
    try:
        sink = _Sink(part, text_part)
        _fetch(url, sink, remote, retries, backoff, timeout, show_progress, say)
        sink.close(complete=True)
    except _CorruptGzip as e:
        if sink is not None:
            sink.close(complete=False)
        for path in (part, text_part, _meta_path(part)):
            if path is not None:
                path.unlink(missing_ok=True)
        raise DownloadError(
            f"{url}: corrupt gzip data ({e}); the partial download was removed, run the "
            "same command again to fetch it anew"
        ) from None
    finally:
        # Kept for the next run to resume (closing twice does nothing), unless empty.
        if sink is not None:
            sink.close(complete=False)
            if sink.size == 0:
                for path in (part, text_part, _meta_path(part)):
                    if path is not None:
                        path.unlink(missing_ok=True)
    with _writing(final):
        os.replace(text_part or part, final)
        if kept_gz is not None:
            os.replace(part, kept_gz)
        else:
            part.unlink(missing_ok=True)
        _meta_path(part).unlink(missing_ok=True)
    return final


def _fetch(
    url: str,
    sink: _Sink,
    remote: _Remote,
    retries: int,
    backoff: float,
    timeout: float,
    show_progress: bool,
    say: Callable[[str], None],
) -> None:
    """Bring ``sink`` to the whole file, resuming and retrying."""
    failures = 0
    name = sink.part.name[1 : -len(".part")]
    if sink.size:
        say(f"resuming {name} at {sink.size / 1e6:.1f} MB")
    bar = _progress_bar(name, remote.total, sink.size, show_progress)
    try:
        while True:
            offset = sink.size
            try:
                response = _open(url, offset, remote.etag, timeout)
            except urllib.error.HTTPError as e:
                e.close()  # its connection
                if e.code == 416 and offset:
                    # Nothing left to send: the part is the whole file, or the file shrank.
                    _, total = _parse_content_range(e.headers.get("Content-Range"))
                    if total == offset:
                        remote.total = total
                        break
                    sink.restart()
                    continue
                if e.code not in RETRY_STATUSES:
                    raise DownloadError(f"{url}: {_describe(e)}") from None
                failures = _retry(url, e, failures, retries, backoff, say)
                continue
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                failures = _retry(url, e, failures, retries, backoff, say)
                continue
            with response:
                start, total = _parse_content_range(response.headers.get("Content-Range"))
                if response.status == 206 and start == offset:
                    remote.total = total if total is not None else remote.total
                else:
                    # The whole file (no range support, or it changed since the last try).
                    if offset:
                        say("the server sent the whole file: starting again")
                        sink.restart()
                    length = response.headers.get("Content-Length")
                    remote.total = int(length) if length and length.isdigit() else None
                remote.etag = _strong_etag(response.headers.get("ETag")) or remote.etag
                with _writing(sink.part):
                    _write_meta(sink.part, url, remote)
                bar.reset(total=remote.total)
                bar.update(sink.size)
                _receive(response, sink, bar)
            if sink.size > offset:
                failures = 0
            if remote.total is None or sink.size >= remote.total:
                break  # with no size given, the stream's end is the file's end
            failures = _retry(
                url,
                ConnectionError(f"connection dropped at {sink.size / 1e6:.1f} MB"),
                failures,
                retries,
                backoff,
                say,
            )
        if remote.total is not None and sink.size != remote.total:
            raise DownloadError(
                f"{url}: got {sink.size} bytes, but the server announced {remote.total}"
            )
    finally:
        bar.close()


def _receive(response: Any, sink: _Sink, bar: Any) -> None:
    """Write the response body to ``sink``; a dropped connection just ends it early (the
    caller resumes)."""
    while True:
        try:
            chunk = response.read(CHUNK)
        except (OSError, http.client.HTTPException):
            return
        if not chunk:
            return
        sink.write(chunk)
        bar.update(len(chunk))


def _retry(
    url: str,
    error: BaseException,
    failures: int,
    retries: int,
    backoff: float,
    say: Callable[[str], None],
) -> int:
    """Wait before the next try, or raise once ``retries`` tries in a row have failed."""
    if failures >= retries:
        tries = "1 try" if failures == 0 else f"{failures + 1} tries"
        raise DownloadError(f"cannot download {url}: {_describe(error)} ({tries})")
    wait = backoff * 2**failures
    say(f"{_describe(error)}; retrying in {wait:g} s ({failures + 1} of {retries})")
    time.sleep(wait)
    return failures + 1


def _progress_bar(name: str, total: int | None, initial: int, show: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=name,
        disable=not show,
        file=sys.stderr,
    )
