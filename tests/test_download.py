"""cs336.datasets and ``cs336 download`` against a real HTTP server on 127.0.0.1, started
by the tests (no internet): plain and gzip files, a connection dropped halfway (resumed
with a Range request, within a run and by the next run), a server without Range support,
404, 503, corrupt and truncated gzip, a refused connection, a full disk, and --prepare."""

from __future__ import annotations

import errno
import gzip
import http.server
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from cs336.cli import main
from cs336.datasets import DATASETS, Dataset, DownloadError, download, downloader, prepare

TEXT = "".join(f"Once upon a time, story {i} began.<|endoftext|>\n" for i in range(3000)).encode()


@dataclass
class Route:
    body: bytes
    #: serve only this many bytes of the body on the first `drops` requests, then close
    drop_at: int | None = None
    drops: int = 1
    ranges: bool = True
    #: answer range requests with 206 but from the start of the file (a broken server)
    wrong_start: bool = False
    #: answer 503 to the first `unavailable` requests
    unavailable: int = 0
    etag: str = '"v1"'
    served: int = 0


@dataclass
class Server:
    url: str
    routes: dict[str, Route]
    #: (path, Range header) of every request
    requests: list[tuple[str, str | None]] = field(default_factory=list)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        state: Server = self.server.state  # type: ignore[attr-defined]
        state.requests.append((self.path, self.headers.get("Range")))
        route = state.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        route.served += 1
        if route.served <= route.unavailable:
            self.send_error(503)
            return
        body, start = route.body, 0
        wanted = self.headers.get("Range")
        if wanted and route.ranges and self.headers.get("If-Range") in (None, route.etag):
            start = 0 if route.wrong_start else int(wanted.removeprefix("bytes=").removesuffix("-"))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("ETag", route.etag)
        self.end_headers()
        end = len(body)
        if route.drop_at is not None and route.served <= route.unavailable + route.drops:
            end = max(start, min(end, route.drop_at))
            self.close_connection = True
        self.wfile.write(body[start:end])


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = Server(f"http://127.0.0.1:{httpd.server_address[1]}", {})
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def fetch(server: Server, path: str, directory: Path, **options: object) -> Path:
    notes: list[str] = []
    options = {"show_progress": False, "backoff": 0.01, "log": notes.append, **options}
    return download(server.url + path, directory, **options)  # type: ignore[arg-type]


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_plain_file_is_fetched_once(server, tmp_path):
    server.routes["/a/stories.txt"] = Route(TEXT)
    path = fetch(server, "/a/stories.txt", tmp_path)
    assert path == tmp_path / "stories.txt"
    assert path.read_bytes() == TEXT
    assert leftovers(tmp_path) == []
    assert fetch(server, "/a/stories.txt", tmp_path) == path
    assert len(server.requests) == 1, "a complete file is not fetched again"


def test_gzip_is_decompressed_and_kept_only_when_asked(server, tmp_path):
    packed = gzip.compress(TEXT)
    server.routes["/owt.txt.gz"] = Route(packed)
    path = fetch(server, "/owt.txt.gz", tmp_path / "one")
    assert path.name == "owt.txt" and path.read_bytes() == TEXT
    assert sorted(p.name for p in path.parent.iterdir()) == ["owt.txt"]
    path = fetch(server, "/owt.txt.gz", tmp_path / "two", keep_gz=True)
    assert (tmp_path / "two" / "owt.txt.gz").read_bytes() == packed
    assert path.read_bytes() == TEXT


def test_concatenated_gzip_members_are_one_file(server, tmp_path):
    server.routes["/two.txt.gz"] = Route(gzip.compress(TEXT[:1000]) + gzip.compress(TEXT[1000:]))
    assert fetch(server, "/two.txt.gz", tmp_path).read_bytes() == TEXT


@pytest.mark.parametrize("name", ["stories.txt", "stories.txt.gz"])
def test_dropped_connection_resumes_with_a_range_request(server, tmp_path, name):
    body = gzip.compress(TEXT, compresslevel=0) if name.endswith(".gz") else TEXT
    server.routes["/" + name] = Route(body, drop_at=len(body) // 2)
    path = fetch(server, "/" + name, tmp_path)
    assert path.read_bytes() == TEXT
    assert [r for _, r in server.requests] == [None, f"bytes={len(body) // 2}-"]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["stories.txt", "stories.txt.gz"])
def test_interrupted_download_continues_in_the_next_run(server, tmp_path, name):
    body = gzip.compress(TEXT, compresslevel=0) if name.endswith(".gz") else TEXT
    server.routes["/" + name] = Route(body, drop_at=len(body) // 3)
    with pytest.raises(DownloadError, match="connection dropped at"):
        fetch(server, "/" + name, tmp_path, retries=0)
    final = tmp_path / name.removesuffix(".gz")
    assert not final.exists(), "nothing half-written under the final name"
    assert (tmp_path / f".{name}.part").stat().st_size == len(body) // 3
    assert fetch(server, "/" + name, tmp_path).read_bytes() == TEXT
    assert server.requests[-1][1] == f"bytes={len(body) // 3}-"
    assert leftovers(tmp_path) == []


def test_server_without_range_support_starts_again(server, tmp_path):
    server.routes["/s.txt"] = Route(TEXT, drop_at=len(TEXT) // 2, ranges=False)
    assert fetch(server, "/s.txt", tmp_path).read_bytes() == TEXT
    assert len(server.requests) == 2


def test_range_answered_from_the_wrong_place_starts_again(server, tmp_path):
    server.routes["/s.txt"] = Route(TEXT, drop_at=len(TEXT) // 2, wrong_start=True)
    assert fetch(server, "/s.txt", tmp_path).read_bytes() == TEXT


def test_changed_file_is_fetched_anew(server, tmp_path):
    server.routes["/s.txt"] = Route(TEXT, drop_at=len(TEXT) // 2)
    with pytest.raises(DownloadError):
        fetch(server, "/s.txt", tmp_path, retries=0)
    changed = TEXT.replace(b"story", b"STORY")
    server.routes["/s.txt"] = Route(changed, etag='"v2"')
    assert fetch(server, "/s.txt", tmp_path).read_bytes() == changed


def test_complete_part_from_an_earlier_run_is_used(server, tmp_path):
    server.routes["/s.txt"] = Route(TEXT, drop_at=len(TEXT), drops=1)
    # The first run got every byte, then "crashed" before the rename.
    (tmp_path / ".s.txt.part").write_bytes(TEXT)
    (tmp_path / ".s.txt.part.json").write_text(
        f'{{"url": "{server.url}/s.txt", "total": {len(TEXT)}, "etag": "\\"v1\\""}}'
    )
    assert fetch(server, "/s.txt", tmp_path).read_bytes() == TEXT
    assert [r for _, r in server.requests] == [f"bytes={len(TEXT)}-"]


def test_unavailable_server_is_retried(server, tmp_path):
    server.routes["/s.txt"] = Route(TEXT, unavailable=2)
    assert fetch(server, "/s.txt", tmp_path).read_bytes() == TEXT
    server.routes["/t.txt"] = Route(TEXT, unavailable=5)
    with pytest.raises(DownloadError, match=r"HTTP 503 .*\(3 tries\)"):
        fetch(server, "/t.txt", tmp_path, retries=2)


def test_missing_file_is_a_clear_error(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404") as e:
        fetch(server, "/nothing.txt", tmp_path)
    assert "\n" not in str(e.value)
    assert len(server.requests) == 1, "a 404 is not retried"
    assert list(tmp_path.iterdir()) == []


def test_corrupt_gzip_is_an_error_and_leaves_nothing(server, tmp_path):
    packed = bytearray(gzip.compress(TEXT))
    packed[-8] ^= 0xFF  # the CRC-32 in the trailer
    server.routes["/bad.txt.gz"] = Route(bytes(packed))
    with pytest.raises(DownloadError, match="corrupt gzip data .*incorrect data check"):
        fetch(server, "/bad.txt.gz", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_truncated_gzip_is_an_error(server, tmp_path):
    packed = gzip.compress(TEXT)
    server.routes["/cut.txt.gz"] = Route(packed[: len(packed) * 2 // 3])
    with pytest.raises(DownloadError, match="truncated"):
        fetch(server, "/cut.txt.gz", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_host_is_a_clear_error(tmp_path):
    # A port nothing listens on: bind one, then close it.
    probe = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    port = probe.server_address[1]
    probe.server_close()
    with pytest.raises(DownloadError, match=r"connection refused \(2 tries\)"):
        download(f"http://127.0.0.1:{port}/x.txt", tmp_path, retries=1, backoff=0.01,
                 show_progress=False, log=lambda _: None)  # fmt: skip


def test_full_disk_is_a_clear_error_and_the_part_is_kept(server, tmp_path, monkeypatch):
    server.routes["/s.txt"] = Route(TEXT)

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

    real_open = open
    monkeypatch.setattr(
        downloader, "open", lambda *a, **k: FullDisk(real_open(*a, **k)), raising=False
    )
    with pytest.raises(DownloadError, match="no space left on the device while writing"):
        fetch(server, "/s.txt", tmp_path)
    assert not (tmp_path / "s.txt").exists()


def test_folder_that_cannot_be_made_is_a_clear_error(server, tmp_path):
    server.routes["/s.txt"] = Route(TEXT)
    (tmp_path / "file").write_text("")
    with pytest.raises(DownloadError, match="cannot write .*file/sub"):
        fetch(server, "/s.txt", tmp_path / "file" / "sub")


@pytest.mark.parametrize("url", ["ftp://x/y.txt", "https://example.org/", "not a url"])
def test_urls_without_a_file_name_are_rejected(url, tmp_path):
    with pytest.raises(DownloadError):
        download(url, tmp_path, show_progress=False)


def local_dataset(server: Server) -> Dataset:
    server.routes["/ts/train.txt"] = Route(TEXT)
    server.routes["/ts/valid.txt.gz"] = Route(gzip.compress(TEXT[:20000]))
    urls = {"train": server.url + "/ts/train.txt", "valid": server.url + "/ts/valid.txt.gz"}
    return Dataset("tinystories", "test stories", urls, 300, "tinystories")


def test_prepare_writes_the_tokenizer_and_token_files_once(server, tmp_path):
    from cs336 import Tokenizer

    dataset = local_dataset(server)
    texts = {split: fetch(server, url[len(server.url) :], tmp_path) for split, url in
             dataset.urls.items()}  # fmt: skip
    notes: list[str] = []
    done = prepare(dataset, tmp_path, texts, show_progress=False, log=notes.append)
    assert done.tokenizer == tmp_path / "tinystories" / "tokenizer"
    tok = Tokenizer.from_dir(done.tokenizer)
    assert tok.vocab_size == 300 and tok.special_tokens == ["<|endoftext|>"]
    ids = np.load(done.train)
    assert tok.decode(ids.tolist()) == TEXT.decode()
    assert tok.decode(np.load(done.valid).tolist()) == TEXT[:20000].decode()
    assert leftovers(tmp_path / "tinystories") == []
    notes.clear()
    assert prepare(dataset, tmp_path, texts, show_progress=False, log=notes.append) == done
    assert all("already there" in note for note in notes), notes
    wrong = Dataset("tinystories", "", dataset.urls, 400, "tinystories")
    with pytest.raises(ValueError, match="not the handout's 400"):
        prepare(wrong, tmp_path, texts, show_progress=False, log=notes.append)


def test_cli_download_and_prepare(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(DATASETS, "tinystories", local_dataset(server))
    out = tmp_path / "data"
    assert main(["download", "tinystories", "--dir", str(out), "--prepare", "--quiet"]) == 0
    stdout = capsys.readouterr().out
    assert (out / "train.txt").read_bytes() == TEXT
    assert (out / "tinystories" / "train.npy").exists()
    assert f"--data.train_path {out / 'tinystories' / 'train.npy'}" in stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["download", "wikipedia"], "unknown dataset 'wikipedia'"),
        (["download", "http://127.0.0.1:9/x.txt", "--prepare"], "--prepare needs a dataset"),
        (["download", "SERVER/missing.txt"], "HTTP 404"),
        (["download", "SERVER/cut.txt.gz"], "truncated"),
    ],
)
def test_cli_errors_are_one_line(server, tmp_path, capsys, args, message):
    server.routes["/cut.txt.gz"] = Route(gzip.compress(TEXT)[:500])
    args = [a.replace("SERVER", server.url) for a in args]
    assert main([*args, "--dir", str(tmp_path), "--quiet", "--retries", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cs336 download: error: ") and message in err, err
    assert "\n" not in err and "Traceback" not in err


def test_zlib_checks_the_gzip_length_too(server, tmp_path):
    packed = bytearray(gzip.compress(TEXT))
    packed[-4] ^= 0x01  # ISIZE, the length in the trailer
    server.routes["/len.txt.gz"] = Route(bytes(packed))
    with pytest.raises(DownloadError, match="incorrect length check"):
        fetch(server, "/len.txt.gz", tmp_path)
    assert zlib.decompressobj(wbits=31)  # the check is zlib's (wbits=31)
