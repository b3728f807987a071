"""Tests for data set names, the rt-polarity download, its cache and local copies.

Downloads go only to an HTTP server on 127.0.0.1 started by the test.
"""

import http.server
import io
import logging
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sentiment_lstm.data import (
    DataError,
    datasets,
    fetch_rt_polarity,
    read_examples,
    resolve_data,
)

ARCHIVE_PATH = "/rt-polaritydata.tar.gz"


@dataclass
class FileServer:
    """A loopback HTTP server that serves fixed bytes per path and logs requests."""

    base_url: str
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base_url + path


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    """Serve FileServer.files on 127.0.0.1 from a thread, with 404 for other paths."""
    state = FileServer(base_url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - name fixed by BaseHTTPRequestHandler
            state.requests.append(self.path)
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def make_tar_gz(members: dict[str, bytes]) -> bytes:
    """Build a .tar.gz archive in memory from member names and contents."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def archive_of(files: dict[str, bytes]) -> bytes:
    return make_tar_gz(
        {f"rt-polaritydata/{name}": data for name, data in files.items()}
    )


def serve_archive(file_server: FileServer, files: dict[str, bytes]) -> str:
    file_server.files[ARCHIVE_PATH] = archive_of(files)
    return file_server.url(ARCHIVE_PATH)


def test_download_into_cache(
    tmp_path: Path,
    rt_files: dict[str, bytes],
    file_server: FileServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = serve_archive(file_server, rt_files)

    with caplog.at_level(logging.INFO, logger="sentiment_lstm.data"):
        folder = fetch_rt_polarity(tmp_path / "cache", url=url)

    assert folder == tmp_path / "cache" / "rt-polarity"
    for name, data in rt_files.items():
        assert (folder / name).read_bytes() == data
    assert sorted(path.name for path in folder.parent.iterdir()) == ["rt-polarity"]
    assert f"downloaded {len(file_server.files[ARCHIVE_PATH])} bytes" in caplog.text


def test_cache_reused(
    tmp_path: Path, rt_files: dict[str, bytes], file_server: FileServer
) -> None:
    url = serve_archive(file_server, rt_files)

    first = fetch_rt_polarity(tmp_path / "cache", url=url)
    second = fetch_rt_polarity(tmp_path / "cache", url=url)

    assert first == second
    assert file_server.requests == [ARCHIVE_PATH]


def test_damaged_cache_downloaded_again(
    tmp_path: Path, rt_files: dict[str, bytes], file_server: FileServer
) -> None:
    url = serve_archive(file_server, rt_files)
    folder = fetch_rt_polarity(tmp_path / "cache", url=url)
    (folder / "rt-polarity.neg").write_bytes(b"changed\n")

    fetch_rt_polarity(tmp_path / "cache", url=url)

    assert (folder / "rt-polarity.neg").read_bytes() == rt_files["rt-polarity.neg"]
    assert len(file_server.requests) == 2


def test_checksum_mismatch_caches_nothing(
    tmp_path: Path, rt_files: dict[str, bytes], file_server: FileServer
) -> None:
    damaged = dict(rt_files)
    damaged["rt-polarity.pos"] = b"x" + rt_files["rt-polarity.pos"][1:]
    url = serve_archive(file_server, damaged)

    with pytest.raises(DataError) as excinfo:
        fetch_rt_polarity(tmp_path / "cache", url=url)

    message = str(excinfo.value)
    assert "checksum mismatch for rt-polarity.pos" in message
    assert datasets.RT_POLARITY_SHA256["rt-polarity.pos"] in message
    assert "got " in message
    assert not (tmp_path / "cache" / "rt-polarity").exists()


def test_unreachable_url(tmp_path: Path, unreachable_url: str) -> None:
    url = unreachable_url

    with pytest.raises(DataError) as excinfo:
        fetch_rt_polarity(tmp_path / "cache", url=url)

    message = str(excinfo.value)
    assert url in message
    assert "set SENTIMENT_LSTM_RT_POLARITY to a local copy" in message
    assert not (tmp_path / "cache").exists()


def test_http_error(tmp_path: Path, file_server: FileServer) -> None:
    url = file_server.url("/missing.tar.gz")

    with pytest.raises(DataError, match="HTTP Error 404"):
        fetch_rt_polarity(tmp_path / "cache", url=url)


def test_oversized_download_rejected(
    tmp_path: Path, file_server: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(datasets, "_MAX_DOWNLOAD_BYTES", 1000)
    file_server.files[ARCHIVE_PATH] = b"x" * 5000

    with pytest.raises(DataError) as excinfo:
        fetch_rt_polarity(tmp_path / "cache", url=file_server.url(ARCHIVE_PATH))

    message = str(excinfo.value)
    assert "the response is larger than 1000 bytes" in message
    assert datasets.RT_POLARITY_ENV in message
    assert not (tmp_path / "cache" / "rt-polarity").exists()


def test_not_an_archive(tmp_path: Path, file_server: FileServer) -> None:
    file_server.files[ARCHIVE_PATH] = b"<html>moved</html>"

    with pytest.raises(DataError, match="not a valid .tar.gz archive"):
        fetch_rt_polarity(tmp_path / "cache", url=file_server.url(ARCHIVE_PATH))


def test_path_traversal_rejected(
    tmp_path: Path, rt_files: dict[str, bytes], file_server: FileServer
) -> None:
    members = {f"rt-polaritydata/{name}": data for name, data in rt_files.items()}
    members["../escape.txt"] = b"outside\n"
    file_server.files[ARCHIVE_PATH] = make_tar_gz(members)

    with pytest.raises(DataError, match="unsafe path '../escape.txt'"):
        fetch_rt_polarity(tmp_path / "cache", url=file_server.url(ARCHIVE_PATH))
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "cache" / "rt-polarity").exists()


def test_archive_missing_member(
    tmp_path: Path, rt_files: dict[str, bytes], file_server: FileServer
) -> None:
    url = serve_archive(file_server, {"rt-polarity.pos": rt_files["rt-polarity.pos"]})

    with pytest.raises(DataError, match="does not contain rt-polarity.neg"):
        fetch_rt_polarity(tmp_path / "cache", url=url)


def test_url_from_environment(
    tmp_path: Path,
    rt_files: dict[str, bytes],
    file_server: FileServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        datasets.RT_POLARITY_URL_ENV, serve_archive(file_server, rt_files)
    )

    folder = fetch_rt_polarity(tmp_path / "cache")

    assert (folder / "rt-polarity.pos").read_bytes() == rt_files["rt-polarity.pos"]
    assert file_server.requests == [ARCHIVE_PATH]


def test_cache_dir_from_environment(
    isolated_environment: Path, rt_files: dict[str, bytes], file_server: FileServer
) -> None:
    folder = fetch_rt_polarity(url=serve_archive(file_server, rt_files))

    assert folder == isolated_environment / "rt-polarity"


def test_local_folder_from_environment(
    tmp_path: Path, rt_files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    local = tmp_path / "local"
    local.mkdir()
    for name, data in rt_files.items():
        (local / name).write_bytes(data)
    monkeypatch.setenv(datasets.RT_POLARITY_ENV, str(local))

    folder = fetch_rt_polarity(tmp_path / "cache")

    assert folder == local
    assert not (tmp_path / "cache").exists()


def test_local_archive_from_environment(
    tmp_path: Path, rt_files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "rt-polaritydata.tar.gz"
    archive.write_bytes(archive_of(rt_files))
    monkeypatch.setenv(datasets.RT_POLARITY_ENV, str(archive))

    folder = fetch_rt_polarity(tmp_path / "cache")

    assert folder == tmp_path / "cache" / "rt-polarity"
    assert (folder / "rt-polarity.neg").read_bytes() == rt_files["rt-polarity.neg"]


def test_local_copy_checked(tmp_path: Path, rt_files: dict[str, bytes]) -> None:
    local = tmp_path / "local"
    local.mkdir()
    (local / "rt-polarity.pos").write_bytes(rt_files["rt-polarity.pos"])
    (local / "rt-polarity.neg").write_bytes(b"not the real file\n")

    with pytest.raises(DataError, match="checksum mismatch for rt-polarity.neg"):
        fetch_rt_polarity(tmp_path / "cache", local_copy=local)


def test_local_copy_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="local copy of rt-polarity not found"):
        fetch_rt_polarity(tmp_path / "cache", local_copy=tmp_path / "nowhere")


def test_relative_local_copy_named_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    with pytest.raises(DataError) as excinfo:
        fetch_rt_polarity(tmp_path / "cache", local_copy=Path("../nowhere"))

    assert "../nowhere (relative to the current folder, so " in str(excinfo.value)
    assert str(tmp_path / ".." / "nowhere") in str(excinfo.value)


def test_resolve_existing_path(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text("text,label\n", encoding="utf-8")

    assert resolve_data(str(path)) == path


def test_resolve_posneg_stem(tmp_path: Path) -> None:
    (tmp_path / "r.pos").write_text("good\n", encoding="utf-8")
    (tmp_path / "r.neg").write_text("bad\n", encoding="utf-8")

    assert resolve_data(str(tmp_path / "r")) == tmp_path / "r"


def test_resolve_local_pair_named_as_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "rt-polarity.pos").write_text("good\n", encoding="utf-8")
    (tmp_path / "rt-polarity.neg").write_text("bad\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)

    with caplog.at_level("WARNING", logger="sentiment_lstm"):
        named = resolve_data("rt-polarity")
    warnings = [record.getMessage() for record in caplog.records]
    caplog.clear()
    with caplog.at_level("WARNING", logger="sentiment_lstm"):
        explicit = resolve_data("./rt-polarity")

    assert named == Path("rt-polarity")
    assert explicit == Path("rt-polarity")
    assert len(warnings) == 1
    assert warnings[0].startswith(
        f"rt-polarity is the name of a data set and of a path in {tmp_path}"
    )
    assert "Pass ./rt-polarity to read the path without this warning" in warnings[0]
    assert caplog.records == []


def test_resolve_half_pair_named_as_dataset(
    tmp_path: Path,
    rt_files: dict[str, bytes],
    file_server: FileServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (tmp_path / "rt-polarity.pos").write_text("good\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(
        datasets.RT_POLARITY_URL_ENV, serve_archive(file_server, rt_files)
    )

    with caplog.at_level("WARNING", logger="sentiment_lstm"):
        folder = resolve_data("rt-polarity", cache_dir=tmp_path / "cache")

    assert folder == tmp_path / "cache" / "rt-polarity"
    assert f"rt-polarity in {tmp_path} is half a pos/neg pair" in caplog.text


def test_resolve_dataset_name(
    tmp_path: Path,
    rt_files: dict[str, bytes],
    file_server: FileServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(
        datasets.RT_POLARITY_URL_ENV, serve_archive(file_server, rt_files)
    )

    folder = resolve_data("rt-polarity", cache_dir=tmp_path / "cache")
    result = read_examples(folder)

    assert folder == tmp_path / "cache" / "rt-polarity"
    assert len(result.examples) == 2 * rt_files["rt-polarity.pos"].count(b"\n")


def test_resolve_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError) as excinfo:
        resolve_data(str(tmp_path / "nothing.csv"))

    message = str(excinfo.value)
    assert "data path not found" in message
    assert "rt-polarity" in message


def test_resolve_empty_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The current folder contains data that an empty path must not pick up.
    (tmp_path / "r.pos").write_text("good\n", encoding="utf-8")
    (tmp_path / "r.neg").write_text("bad\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)

    with pytest.raises(DataError, match=r"the data path is empty \(''\)"):
        resolve_data("")


def test_resolve_data_names_link_loop(tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.symlink_to(second)
    second.symlink_to(first)

    with pytest.raises(DataError, match="is a link that leads to no file: the links "):
        resolve_data(str(first))


def test_resolve_data_names_missing_link_target(tmp_path: Path) -> None:
    link = tmp_path / "reviews.csv"
    link.symlink_to(tmp_path / "moved.csv")

    with pytest.raises(DataError) as error:
        resolve_data(str(link))

    assert f"its target {tmp_path / 'moved.csv'} does not exist" in str(error.value)
