"""`adm download` and adm.hub.download against a local HTTP server (127.0.0.1 only, no internet)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import adm.cli.download_cmd as download_cmd
import adm.hub.transfer as transfer
from adm.cli.main import app
from adm.core.errors import ChecksumError, DownloadError, MissingFileError, UsageError
from adm.hub.cache import lock_path, part_path, read_record, record_path
from adm.hub.download import (
    cache_entries,
    cache_path,
    download_artifact,
    ensure_artifact,
    import_file,
    is_cached,
    resolve_artifacts,
    resolve_url,
    verify_artifact,
)
from adm.hub.transfer import TransferPolicy
from adm.presets import Artifact, Preset, Registry, default_registry
from http_server import FileServer

SIZE = 300_000
FAST = TransferPolicy(
    connect_timeout=2, read_timeout=5, retries=2, backoff=0.001, chunk_size=16 * 1024
)
REPO_SRC = Path(__file__).resolve().parents[1] / "src"


def blob(seed: int, size: int = SIZE) -> bytes:
    return random.Random(seed).randbytes(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_registry(*artifacts: Artifact, presets: tuple[Preset, ...] = ()) -> Registry:
    """A registry filled through the plugin mechanism, as a third-party package would."""

    def register(registry: Registry) -> None:
        for artifact in artifacts:
            registry.add_artifact(artifact)
        for preset in presets:
            registry.add_preset(preset)

    registry = Registry().load_plugins([("tests", register)])
    assert not registry.plugin_errors
    return registry


def assert_nothing_or_verified(art: Artifact, cache: Path, data: bytes) -> None:
    """The cache invariant: no file at all, or the right file with its record."""
    path = cache_path(art, cache)
    if not path.exists():
        assert not record_path(path).exists() or read_record(path) is not None
        return
    assert path.read_bytes() == data
    record = read_record(path)
    assert record is not None and record.sha256 == sha(data)


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    for var in ("ADM_BASE_URL", "ADM_HOME", "ADM_DOWNLOAD_RETRIES", "ADM_DOWNLOAD_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("ADM_DOWNLOAD_BACKOFF", "0.001")  # the CLI reads its policy from the env


@pytest.fixture
def server():
    with FileServer() as srv:
        yield srv


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def use_registry(monkeypatch, registry: Registry) -> None:
    monkeypatch.setattr(download_cmd, "default_registry", lambda: registry)


def served(
    server: FileServer, name: str, data: bytes, *, published: bool = True, **entry
) -> Artifact:
    path = f"/files/{name}.bin"
    url = server.add(path, data, **entry)
    return Artifact(
        name=name,
        url=url,
        filename=f"{name}.bin",
        size=len(data) if published else None,
        sha256=sha(data) if published else None,
        kind="checkpoint",
        description=f"test artifact {name}",
    )


# ------------------------------------------------------------------------------------ library


def test_happy_path_then_cached(server, cache):
    data = blob(1)
    art = served(server, "t-happy", data)
    registry = make_registry(art)
    seen = []
    got = download_artifact(
        "t-happy",
        registry=registry,
        cache_dir=cache,
        policy=FAST,
        on_progress=lambda event: seen.append((event.completed, event.total)),
    )
    assert got.action == "downloaded" and got.path == cache / "t-happy" / "t-happy.bin"
    assert got.path.read_bytes() == data and got.sha256 == sha(data)
    assert seen[-1] == (SIZE, SIZE) and len(seen) > 2
    record = read_record(got.path)
    assert record.trust == "published" and record.source == art.url
    assert not part_path(got.path).exists()
    assert is_cached("t-happy", cache_dir=cache, registry=registry)
    again = download_artifact("t-happy", registry=registry, cache_dir=cache, policy=FAST)
    assert again.action == "cached"
    assert ensure_artifact("t-happy", cache_dir=cache, registry=registry) == got.path
    assert len(server.gets("/files/t-happy.bin")) == 1
    forced = download_artifact(art, cache_dir=cache, policy=FAST, force=True)
    assert forced.action == "downloaded" and forced.path.read_bytes() == data
    assert len(server.gets("/files/t-happy.bin")) == 2


def test_cache_root_from_adm_home(server, tmp_path, monkeypatch):
    data = blob(2)
    art = served(server, "t-home", data)
    monkeypatch.setenv("ADM_HOME", str(tmp_path / "home"))
    got = download_artifact(art, policy=FAST)
    assert got.path == tmp_path / "home" / "t-home" / "t-home.bin"
    assert cache_path(art) == got.path


def test_resume_after_connection_dropped(server, cache):
    data = blob(3)
    art = served(server, "t-drop", data)
    server.fail_next("/files/t-drop.bin", "drop")
    # first run gives up at once (no retries): the .part stays behind
    with pytest.raises(DownloadError, match="kept, re-running resumes"):
        download_artifact(art, cache_dir=cache, policy=TransferPolicy(retries=0, backoff=0.001))
    path = cache_path(art, cache)
    kept = part_path(path).stat().st_size
    assert 0 < kept < SIZE and not path.exists()
    assert_nothing_or_verified(art, cache, data)
    # a second run hashes the .part, asks for the rest only, and ends with the right file
    notes = []
    got = download_artifact(art, cache_dir=cache, policy=FAST, on_progress=lambda event: event.message and notes.append(event.message))
    gets = server.gets("/files/t-drop.bin")
    assert len(gets) == 2 and gets[0].range is None
    assert gets[1].range == f"bytes={kept}-" and gets[1].headers.get("If-Range")
    assert got.resumed_from == kept and got.path.read_bytes() == data
    assert any("resuming" in n for n in notes)


def test_drop_mid_body_retried_within_one_call(server, cache):
    data = blob(4)
    art = served(server, "t-drop2", data)
    # each drop still gains bytes, so none of them counts against the retry budget
    server.fail_next("/files/t-drop2.bin", "drop", "drop", "drop")
    got = download_artifact(
        art, cache_dir=cache, policy=TransferPolicy(retries=1, backoff=0.001, chunk_size=4096)
    )
    gets = server.gets("/files/t-drop2.bin")
    assert len(gets) == 4 and all(g.range for g in gets[1:])
    assert got.path.read_bytes() == data


def test_server_without_range_support_restarts_cleanly(server, cache):
    data = blob(5)
    art = served(server, "t-norange", data, ignore_range=True)
    server.fail_next("/files/t-norange.bin", "drop")
    notes = []
    got = download_artifact(art, cache_dir=cache, policy=FAST, on_progress=lambda event: event.message and notes.append(event.message))
    gets = server.gets("/files/t-norange.bin")
    assert len(gets) == 2 and gets[1].range is not None  # asked to resume, got 200 with everything
    assert got.path.read_bytes() == data
    assert any("starting over" in n for n in notes)


def test_500_then_success(server, cache):
    data = blob(6)
    art = served(server, "t-500", data)
    server.fail_next("/files/t-500.bin", "500")
    got = download_artifact(art, cache_dir=cache, policy=FAST)
    assert got.path.read_bytes() == data and len(server.gets("/files/t-500.bin")) == 2


def test_persistent_5xx_gives_up_after_retries(server, cache):
    data = blob(7)
    art = served(server, "t-503", data)
    server.fail_next("/files/t-503.bin", *["503"] * 10)
    with pytest.raises(DownloadError, match=r"kept failing with HTTP 503.*3 attempts") as info:
        download_artifact(art, cache_dir=cache, policy=FAST)
    assert "ADM_BASE_URL" in info.value.hint and "--from-file" in info.value.hint
    assert len(server.gets("/files/t-503.bin")) == 3  # 1 + FAST.retries
    assert not cache_path(art, cache).exists() and not part_path(cache_path(art, cache)).exists()


def test_persistent_404_names_the_url(server, cache):
    art = Artifact(name="t-404", url=server.url("/files/missing.bin"), filename="missing.bin")
    with pytest.raises(DownloadError) as info:
        download_artifact(art, cache_dir=cache, policy=FAST)
    assert server.url("/files/missing.bin") in str(info.value) and "404" in str(info.value)
    assert len(server.gets("/files/missing.bin")) == 1  # a 404 is not retried
    path = cache_path(art, cache)
    assert not path.exists() and not part_path(path).exists() and not record_path(path).exists()


def test_truncated_body_is_never_installed(server, cache):
    data = blob(8)
    # once: the resume fetches the rest
    art = served(server, "t-trunc", data)
    server.fail_next("/files/t-trunc.bin", "truncate")
    got = download_artifact(art, cache_dir=cache, policy=FAST)
    assert got.path.read_bytes() == data
    resumed_at = int(server.gets("/files/t-trunc.bin")[1].range[len("bytes=") : -1])
    assert 0 < resumed_at <= SIZE // 2
    # always, on a server that cannot resume, and no size in the registry: give up, install nothing
    bad = served(
        server, "t-trunc-always", data, published=False, truncate_always=True, ignore_range=True
    )
    with pytest.raises(DownloadError, match=r"connection dropped mid-transfer \(3 attempts\)"):
        download_artifact(bad, cache_dir=cache, policy=FAST)
    assert not cache_path(bad, cache).exists()
    assert_nothing_or_verified(bad, cache, data)


def test_wrong_content_sha_mismatch_leaves_nothing(server, cache):
    data = blob(9)
    art = served(server, "t-sha", data).model_copy(update={"sha256": sha(blob(10))})
    with pytest.raises(ChecksumError, match="sha256 mismatch") as info:
        download_artifact(art, cache_dir=cache, policy=FAST)
    assert info.value.exit_code == 4
    path = cache_path(art, cache)
    assert not path.exists() and not part_path(path).exists() and not record_path(path).exists()
    leftovers = [p.name for p in path.parent.iterdir() if p != lock_path(path)]
    assert leftovers == []


def test_registry_size_disagrees_with_server(server, cache):
    data = blob(11)
    art = served(server, "t-size", data).model_copy(update={"size": SIZE + 1})
    with pytest.raises(
        ChecksumError, match=f"serves {SIZE} bytes, the registry expects {SIZE + 1}"
    ):
        download_artifact(art, cache_dir=cache, policy=FAST)
    assert not cache_path(art, cache).exists() and not part_path(cache_path(art, cache)).exists()


def test_disk_full_keeps_partial_for_resume(server, cache, monkeypatch):
    data = blob(12)
    art = served(server, "t-enospc", data)
    real = transfer.write_chunk
    written = []

    def filling(fh, chunk):
        if sum(written) >= 100_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(len(chunk))
        real(fh, chunk)

    monkeypatch.setattr(transfer, "write_chunk", filling)
    with pytest.raises(DownloadError, match="disk full") as info:
        download_artifact(art, cache_dir=cache, policy=FAST)
    assert "resume" in info.value.hint
    path = cache_path(art, cache)
    assert part_path(path).stat().st_size == sum(written) and not path.exists()
    monkeypatch.setattr(transfer, "write_chunk", real)
    got = download_artifact(art, cache_dir=cache, policy=FAST)
    assert got.resumed_from == sum(written) and got.path.read_bytes() == data


def test_connection_refused_suggests_mirror_or_file(cache):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    art = Artifact(name="t-down", url=f"http://127.0.0.1:{port}/x.bin", filename="x.bin")
    with pytest.raises(DownloadError) as info:
        download_artifact(art, cache_dir=cache, policy=FAST)
    text = str(info.value)
    assert (
        "connection refused" in text
        and "ADM_BASE_URL" in text
        and "adm download t-down --from-file" in text
    )
    assert "\n" not in text
    assert not cache_path(art, cache).exists()


def test_dns_failure_is_one_line_and_suggests_mirror(cache):
    import socket

    import requests
    import urllib3

    class NoDNS:
        calls = 0

        def get(self, url, **kwargs):
            NoDNS.calls += 1
            reason = urllib3.exceptions.NameResolutionError(
                "nowhere.invalid", None, socket.gaierror(-2, "Name or service not known")
            )
            raise requests.ConnectionError(
                urllib3.exceptions.MaxRetryError(None, "/x", reason=reason)
            )

    art = Artifact(name="t-dns", url="https://nowhere.invalid/x.bin", filename="x.bin")
    with pytest.raises(DownloadError) as info:
        download_artifact(art, cache_dir=cache, policy=FAST, session=NoDNS())
    assert (
        info.value.message
        == "cannot download t-dns from nowhere.invalid: DNS lookup failed (3 attempts)"
    )
    assert "ADM_BASE_URL" in info.value.hint and "--from-file" in info.value.hint
    assert NoDNS.calls == 3


def test_mirror_base_url(server, cache, monkeypatch):
    data = blob(13)
    server.add("/mirror/ref/nested/t-mirror.npz", data)
    art = Artifact(
        name="t-mirror",
        url="http://127.0.0.1:9/unreachable.npz",
        filename="t-mirror.npz",
        mirror_path="ref/nested/t-mirror.npz",
        sha256=sha(data),
    )
    monkeypatch.setenv("ADM_BASE_URL", server.url("/mirror/"))
    assert resolve_url(art) == server.url("/mirror/ref/nested/t-mirror.npz")
    got = download_artifact(art, cache_dir=cache, policy=FAST)
    assert got.path.read_bytes() == data and got.source == server.url(
        "/mirror/ref/nested/t-mirror.npz"
    )
    # no mirror_path: the file name is appended
    plain = Artifact(name="t-plain", url="http://x/y.pt", filename="y.pt")
    assert resolve_url(plain, "http://m.example/base") == "http://m.example/base/y.pt"
    monkeypatch.delenv("ADM_BASE_URL")
    assert resolve_url(plain) == "http://x/y.pt"


def test_tofu_recorded_then_tampering_detected(server, cache):
    data = blob(14)
    art = served(server, "t-tofu", data, published=False)
    registry = make_registry(art)
    path = ensure_artifact("t-tofu", download=True, cache_dir=cache, registry=registry)
    record = read_record(path)
    assert record.trust == "first-use" and record.sha256 == sha(data) and record.size == SIZE
    assert json.loads(record_path(path).read_text())["sha256"] == sha(data)
    # tampering that changes the mtime is caught on the next use: rehashed, removed
    time.sleep(0.01)
    path.write_bytes(blob(15))
    with pytest.raises(ChecksumError, match="failed verification and was removed") as info:
        ensure_artifact("t-tofu", cache_dir=cache, registry=registry)
    assert "adm download t-tofu" in info.value.hint
    assert not path.exists()
    # fetched again; a touch without a change is re-hashed and accepted
    path = ensure_artifact("t-tofu", download=True, cache_dir=cache, registry=registry)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert not is_cached("t-tofu", cache_dir=cache, registry=registry)
    assert ensure_artifact("t-tofu", cache_dir=cache, registry=registry) == path
    assert is_cached("t-tofu", cache_dir=cache, registry=registry)


def test_verify_detects_tampering_that_keeps_size_and_mtime(server, cache):
    data = blob(16)
    art = served(server, "t-verify", data, published=False)
    registry = make_registry(art)
    path = download_artifact(art, cache_dir=cache, policy=FAST).path
    assert verify_artifact("t-verify", registry=registry, cache_dir=cache).status == "ok"
    st = path.stat()
    tampered = bytearray(data)
    tampered[1234] ^= 0xFF
    path.write_bytes(bytes(tampered))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert is_cached("t-verify", cache_dir=cache, registry=registry)  # the quick look cannot tell
    result = verify_artifact("t-verify", registry=registry, cache_dir=cache)
    assert (
        result.status == "mismatch"
        and result.expected == sha(data)
        and result.sha256 == sha(bytes(tampered))
    )
    assert not path.exists() and not record_path(path).exists()
    assert verify_artifact("t-verify", registry=registry, cache_dir=cache).status == "missing"


def test_import_from_file(tmp_path, cache):
    data = blob(17)
    art = Artifact(
        name="t-import", url="http://127.0.0.1:9/t.pt", filename="t.pt", size=SIZE, sha256=sha(data)
    )
    registry = make_registry(art)
    good = tmp_path / "good.pt"
    good.write_bytes(data)
    got = import_file("t-import", good, registry=registry, cache_dir=cache)
    assert got.action == "imported" and got.path.read_bytes() == data
    assert read_record(got.path).source == good.resolve().as_uri()
    assert ensure_artifact("t-import", cache_dir=cache, registry=registry) == got.path
    # a wrong file (same size, other bytes) is refused and never replaces the good one
    bad = tmp_path / "bad.pt"
    bad.write_bytes(blob(18))
    with pytest.raises(ChecksumError, match="does not match the published sha256"):
        import_file("t-import", bad, registry=registry, cache_dir=cache)
    assert got.path.read_bytes() == data
    assert sorted(p.name for p in got.path.parent.iterdir()) == [
        "t.pt",
        "t.pt.lock",
        "t.pt.record.json",
    ]
    with pytest.raises(ChecksumError, match="has 10 bytes"):
        (tmp_path / "short.pt").write_bytes(b"0123456789")
        import_file("t-import", tmp_path / "short.pt", registry=registry, cache_dir=cache)
    with pytest.raises(MissingFileError):
        import_file("t-import", tmp_path / "nope.pt", registry=registry, cache_dir=cache)


def test_import_without_published_hash_is_trusted_on_first_use(tmp_path, cache):
    data = blob(19)
    art = Artifact(name="t-import2", url="http://127.0.0.1:9/u.pt", filename="u.pt")
    src = tmp_path / "u.pt"
    src.write_bytes(data)
    got = import_file(art, src, cache_dir=cache)
    record = read_record(got.path)
    assert record.trust == "first-use" and record.sha256 == sha(data)


def test_ensure_artifact_missing_names_the_command(cache):
    art = Artifact(
        name="t-missing", url="http://127.0.0.1:9/m.pt", filename="m.pt", kind="checkpoint"
    )
    registry = make_registry(art)
    with pytest.raises(MissingFileError) as info:
        ensure_artifact("t-missing", cache_dir=cache, registry=registry)
    err = info.value
    assert (
        err.message == f"checkpoint t-missing is not in the cache ({cache / 't-missing' / 'm.pt'})"
    )
    assert err.hint == "run `adm download t-missing`, or pass --download"
    assert not cache.exists()  # looking does not create folders
    with pytest.raises(UsageError, match="did you mean t-missing"):
        ensure_artifact("t-mising", cache_dir=cache, registry=registry)


def test_hand_placed_file_is_not_trusted(cache):
    art = Artifact(name="t-hand", url="http://127.0.0.1:9/h.pt", filename="h.pt")
    registry = make_registry(art)
    path = cache_path(art, cache)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"who knows")
    with pytest.raises(MissingFileError, match="not placed there by adm") as info:
        ensure_artifact("t-hand", cache_dir=cache, registry=registry)
    assert "--from-file" in info.value.hint
    import_file("t-hand", path, registry=registry, cache_dir=cache)  # accept it explicitly
    assert (
        ensure_artifact("t-hand", cache_dir=cache, registry=registry).read_bytes() == b"who knows"
    )


def test_presets_expand_to_their_artifacts(server):
    registry = make_registry(
        served(server, "t-model", blob(20)),
        served(server, "t-clf", blob(21)),
        presets=(
            Preset(
                name="t-preset",
                model_flags="--image_size 64",
                checkpoint="t-model",
                classifier_checkpoint="t-clf",
            ),
        ),
    )
    assert [a.name for a in resolve_artifacts(["t-preset", "t-clf"], registry)] == [
        "t-model",
        "t-clf",
    ]
    with pytest.raises(UsageError, match="did you mean t-preset"):
        resolve_artifacts(["t-prest"], registry)
    # the built-in registry: a preset downloads the model and its classifier
    assert [a.name for a in resolve_artifacts(["imagenet256"], default_registry())] == [
        "256-cond",
        "256-classifier",
    ]


# ------------------------------------------------------------------------------------ concurrency

CHILD = textwrap.dedent(
    """
    import json, sys
    from adm.hub.download import download_artifact
    from adm.hub.transfer import TransferPolicy
    from adm.presets import Artifact
    art = Artifact(**json.loads(sys.argv[1]))
    note = lambda event: event.message and print("status:", event.message, flush=True)
    got = download_artifact(art, cache_dir=sys.argv[2], policy=TransferPolicy(backoff=0.001), on_progress=note)
    print("result:", got.action, got.path, flush=True)
    """
)


def test_two_processes_download_once(server, cache):
    data = blob(22)
    gate = threading.Event()
    art = served(server, "t-concurrent", data, gate=gate)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    cmd = [sys.executable, "-c", CHILD, art.model_dump_json(), str(cache)]
    first = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    second = None
    try:
        deadline = time.monotonic() + 30
        # the first process holds the lock and its GET is in, with the body held back by the gate
        while not server.gets("/files/t-concurrent.bin"):
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.02)
        second = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        # blocks until the second process reports that it waits for the lock
        line = second.stdout.readline()
        assert "waiting for another adm process" in line, (line, second.stderr.read())
        gate.set()
        out1, err1 = first.communicate(timeout=60)
        out2, err2 = second.communicate(timeout=60)
    finally:
        gate.set()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    path = cache_path(art, cache)
    assert f"result: downloaded {path}" in out1
    assert f"result: cached {path}" in out2
    assert len(server.gets("/files/t-concurrent.bin")) == 1
    assert path.read_bytes() == data


# ------------------------------------------------------------------------------------ CLI


def test_cli_download_renders_progress_and_result(server, cache, monkeypatch, runner):
    art = served(server, "t-cli", blob(23))
    use_registry(monkeypatch, make_registry(art))
    result = runner.invoke(app, ["download", "t-cli", "--dir", str(cache)])
    assert result.exit_code == 0, result.output
    assert "t-cli" in result.output and "300.0 kB" in result.output  # the bar's DownloadColumn
    assert f"downloaded 300.0 kB -> {cache_path(art, cache)}" in result.output.replace("\n", "")
    again = runner.invoke(app, ["download", "t-cli", "--dir", str(cache)])
    assert again.exit_code == 0 and "already cached" in again.output


def test_cli_list(server, cache, monkeypatch, runner):
    fetched = served(server, "t-list-a", blob(24))
    other = served(server, "t-list-b", blob(25, 123_456))
    unknown = Artifact(
        name="t-list-c", url="http://127.0.0.1:9/c.bin", filename="c.bin", kind="reference"
    )
    use_registry(monkeypatch, make_registry(fetched, other, unknown))
    download_artifact(fetched, cache_dir=cache, policy=FAST)
    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        app, ["download", "--list", "--dir", str(cache)]
    )
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line for line in result.output.splitlines() if "t-list-" in line}
    assert set(rows) == {"t-list-a", "t-list-b", "t-list-c"}
    assert "300.0 kB" in rows["t-list-a"] and " yes " in rows["t-list-a"]
    assert f"in the cache {cache} (a file there is NAME/FILE)" in result.output  # the folder, said once
    assert f" {cache_path(fetched, cache).name} " in rows["t-list-a"]
    assert "123.5 kB" in rows["t-list-b"] and " no " in rows["t-list-b"]
    references = result.output.partition("reference batches")[2]
    assert "t-list-c" in references and " unknown " in rows["t-list-c"]  # no size published, none cached
    entries = {
        e.artifact.name: e
        for e in cache_entries(cache_dir=cache, registry=make_registry(fetched, other))
    }
    assert entries["t-list-a"].state == "ok" and entries["t-list-b"].state == "missing"


def test_cli_verify_and_from_file(server, cache, tmp_path, monkeypatch, runner):
    data = blob(26)
    tofu = served(server, "t-cv", data, published=False)
    pinned = Artifact(
        name="t-pinned", url="http://127.0.0.1:9/p.bin", filename="p.bin", sha256=sha(data)
    )
    use_registry(monkeypatch, make_registry(tofu, pinned))
    assert runner.invoke(app, ["download", "t-cv", "--dir", str(cache)]).exit_code == 0
    ok = runner.invoke(app, ["download", "--verify", "--dir", str(cache)])
    assert (
        ok.exit_code == 0
        and f"ok t-cv: sha256 {sha(data)}" in ok.output
        and "first download" in ok.output
    )
    path = cache_path(tofu, cache)
    st = path.stat()
    path.write_bytes(blob(27))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    bad = runner.invoke(app, ["download", "--verify", "t-cv", "--dir", str(cache)])
    assert bad.exit_code == 4 and "mismatch t-cv" in bad.output
    assert "error: 1 cached file(s) failed verification and were removed: t-cv" in bad.output
    assert not path.exists()
    # --from-file: a good copy is imported, a bad one refused (exit 4, nothing cached)
    wrong = tmp_path / "wrong.bin"
    wrong.write_bytes(blob(28))
    refused = runner.invoke(
        app, ["download", "t-pinned", "--from-file", str(wrong), "--dir", str(cache)]
    )
    assert refused.exit_code == 4 and "does not match the published sha256" in refused.output
    assert not cache_path(pinned, cache).exists()
    right = tmp_path / "right.bin"
    right.write_bytes(data)
    imported = runner.invoke(
        app, ["download", "t-pinned", "--from-file", str(right), "--dir", str(cache)]
    )
    assert imported.exit_code == 0 and f"sha256 {sha(data)}" in imported.output
    assert cache_path(pinned, cache).read_bytes() == data
    missing = runner.invoke(app, ["download", "--verify", "t-cv", "--dir", str(cache)])
    assert missing.exit_code == 2 and "not in the cache: t-cv" in missing.output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["download", "t-err-40"],
            2,
            "unknown artifact or preset 't-err-40' (did you mean t-err-404",
        ),
        (["download", "t-err-404"], 3, "was not found (HTTP 404"),
        (["download", "t-err-sha"], 4, "sha256 mismatch"),
        (["download"], 2, "name what to download"),
        (["download", "--list", "--verify"], 2, "--list and --verify cannot be combined"),
        (
            ["download", "t-err-sha", "t-err-404", "--from-file", "x"],
            2,
            "--from-file imports one artifact",
        ),
    ],
)
def test_cli_errors_are_one_line(server, cache, monkeypatch, runner, args, code, message):
    data = blob(29)
    registry = make_registry(
        Artifact(name="t-err-404", url=server.url("/files/none.bin"), filename="none.bin"),
        served(server, "t-err-sha", data).model_copy(update={"sha256": sha(b"other")}),
    )
    use_registry(monkeypatch, registry)
    result = CliRunner(env={"COLUMNS": "400"}).invoke(app, [*args, "--dir", str(cache)])
    assert result.exit_code == code, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output
    for art in registry.artifacts.values():
        assert not cache_path(art, cache).exists()


def test_sha256_prefix_from_a_torch_hub_file_name_is_checked(server, cache):
    data = blob(42)
    good = served(server, "t-prefix", data).model_copy(update={"sha256": sha(data)[:8]})
    got = download_artifact(good, registry=make_registry(good), cache_dir=cache)
    assert got.sha256 == sha(data)
    bad = served(server, "t-prefix-bad", data).model_copy(update={"sha256": "deadbeef"})
    with pytest.raises(ChecksumError):
        download_artifact(bad, registry=make_registry(bad), cache_dir=cache)
    assert_nothing_or_verified(bad, cache, data)
