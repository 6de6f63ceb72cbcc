"""Streaming one URL into a resumable ``.part`` file: Range resume, retries, size and hash checks.

This is the network half of ``adm.hub.download``: it knows nothing about the registry or the
cache layout, only a URL, a ``.part`` path, and what the finished file must look like. It never
renames the ``.part`` into place; the caller does that once everything checks out.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests

from adm.core.errors import ChecksumError, DownloadError, DownloadStorageError, UsageError, one_line
from adm.core.fileio import write_text_atomic
from adm.hub.cache import ProgressCallback, hash_into, hash_matches

StatusCallback = Callable[[str], None]
"""``on_status(message)``: one-line notes (resuming, retrying, waiting) for the CLI to show."""

ENV_RETRIES = "ADM_DOWNLOAD_RETRIES"
ENV_BACKOFF = "ADM_DOWNLOAD_BACKOFF"
ENV_TIMEOUT = "ADM_DOWNLOAD_TIMEOUT"

_RETRY_STATUS = {408, 429}
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class TransferPolicy:
    """Timeouts and retries. ``backoff`` is the first delay; each failure in a row doubles it.

    A failed attempt that still moved the download forward (a connection dropped mid-body) does
    not count against ``retries``: only attempts in a row that gained nothing do.
    """

    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retries: int = 4
    backoff: float = 1.0
    max_backoff: float = 60.0
    chunk_size: int = 1 << 16  # also the most a dropped connection can lose of what arrived

    def delay(self, failures: int) -> float:
        return min(self.max_backoff, self.backoff * 2 ** max(0, failures - 1))

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> TransferPolicy:
        """Defaults, overridden by ``ADM_DOWNLOAD_RETRIES`` / ``_BACKOFF`` / ``_TIMEOUT`` (seconds)."""
        env = os.environ if environ is None else environ
        values: dict[str, float | int] = {}
        for var, field, kind in (
            (ENV_RETRIES, "retries", int),
            (ENV_BACKOFF, "backoff", float),
            (ENV_TIMEOUT, "read_timeout", float),
        ):
            raw = env.get(var)
            if raw in (None, ""):
                continue
            try:
                value = kind(raw)
            except ValueError:
                raise UsageError(f"{var}={raw!r} is not a number") from None
            if value < 0:
                raise UsageError(f"{var}={raw!r} must not be negative")
            values[field] = value
        if "read_timeout" in values:
            values["connect_timeout"] = min(cls.connect_timeout, float(values["read_timeout"]))
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Transferred:
    sha256: str
    size: int
    resumed_from: int
    attempts: int


class _Retry(Exception):
    """An attempt failed in a way worth trying again (connection trouble, 5xx)."""

    def __init__(self, reason: str, status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status


class _Part:
    """The ``.part`` file and a running sha256 of exactly the bytes it holds."""

    def __init__(self, path: Path):
        self.path = path
        self.meta = path.with_name(path.name + ".json")
        self.hasher = hashlib.sha256()
        self.size = 0

    def load(self, on_progress: ProgressCallback | None, total: int | None) -> None:
        """Hash what an earlier, interrupted run left behind, so a resume can finish the hash."""
        if self.path.is_file():
            self.size = hash_into(self.hasher, self.path, on_progress, total)

    def reset(self) -> None:
        self.path.unlink(missing_ok=True)
        self.meta.unlink(missing_ok=True)
        self.hasher = hashlib.sha256()
        self.size = 0

    def sync(self) -> None:
        """Cut the file back to the hashed length (a write that failed halfway may have left more)."""
        try:
            if self.path.stat().st_size != self.size:
                os.truncate(self.path, self.size)
        except FileNotFoundError:
            self.size = 0
            self.hasher = hashlib.sha256()

    def validator(self, url: str) -> str | None:
        try:
            data = json.loads(self.meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data.get("validator") if data.get("url") == url else None

    def remember(self, url: str, response: requests.Response) -> None:
        validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
        if validator and not validator.startswith("W/"):
            write_text_atomic(self.meta, json.dumps({"url": url, "validator": validator}) + "\n")
        else:
            self.meta.unlink(missing_ok=True)


def fetch_to_part(
    url: str,
    part_file: Path,
    *,
    name: str,
    expected_size: int | None = None,
    expected_sha256: str | None = None,
    policy: TransferPolicy | None = None,
    on_progress: ProgressCallback | None = None,
    on_status: StatusCallback | None = None,
    session: requests.Session | None = None,
    restart: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> Transferred:
    """Bring ``part_file`` to the complete content of ``url`` and return its sha256 and size.

    An existing ``.part`` is hashed and resumed with ``Range`` (unless ``restart``). On a size or
    hash mismatch the ``.part`` is deleted and ``ChecksumError`` raised; on giving up after
    retries it is kept, so the next run resumes.
    """
    policy = policy or TransferPolicy()
    status = on_status or (lambda _msg: None)
    part = _Part(part_file)
    if restart:
        part.reset()
    else:
        part.load(on_progress, expected_size)
        if expected_size is not None and part.size > expected_size:
            status(f"discarding {part_file.name}: it is longer than {name} can be")
            part.reset()
        elif part.size:
            status(f"resuming {name} at {_mb(part.size)}")
    resumed_from = part.size
    own_session = session is None
    sess = session or requests.Session()
    failures = attempts = 0
    try:
        while True:
            attempts += 1
            before = part.size
            try:
                done = _attempt(
                    url,
                    part,
                    sess,
                    name=name,
                    expected_size=expected_size,
                    policy=policy,
                    on_progress=on_progress,
                    status=status,
                )
            except _Retry as problem:
                part.sync()
                failures = 1 if part.size > before else failures + 1  # progress: a fresh start
                if failures > policy.retries:
                    raise _give_up(url, name, problem, attempts, part.size) from None
                wait = policy.delay(failures)
                status(
                    f"{name}: {problem.reason}; retrying in {wait:.3g}s (attempt {attempts + 1})"
                )
                sleep(wait)
                continue
            except requests.RequestException as err:  # (an OSError too; not a disk problem)
                part.sync()
                raise DownloadError(
                    f"cannot download {name} from {url}: {one_line(err)}"
                ) from None
            except OSError as err:
                part.sync()
                raise _disk_error(err, part_file, name, part.size) from None
            if done:
                break
    finally:
        if own_session:
            sess.close()

    if expected_size is not None and part.size != expected_size:
        part.reset()
        raise ChecksumError(
            f"{name}: {url} delivered {part.size} bytes, the registry expects {expected_size}; nothing was kept",
            f"re-run `adm download {name}`; if it persists, the source serves a different file",
        )
    digest = part.hasher.hexdigest()
    if expected_sha256 and not hash_matches(digest, expected_sha256):
        part.reset()
        raise ChecksumError(
            f"{name}: sha256 mismatch for the file from {url} (got {digest[:12]}…, expected "
            f"{expected_sha256.lower()[:12]}…); the download was deleted",
            f"re-run `adm download {name}`; if it persists, the source serves a different file",
        )
    part.meta.unlink(missing_ok=True)
    return Transferred(sha256=digest, size=part.size, resumed_from=resumed_from, attempts=attempts)


def _attempt(
    url: str,
    part: _Part,
    sess: requests.Session,
    *,
    name: str,
    expected_size: int | None,
    policy: TransferPolicy,
    on_progress: ProgressCallback | None,
    status: StatusCallback,
) -> bool:
    """One GET. True when the ``.part`` is complete; raises ``_Retry`` for a failure worth retrying."""
    headers = {"Accept-Encoding": "identity"}
    if part.size:
        headers["Range"] = f"bytes={part.size}-"
        validator = part.validator(url)
        if validator:
            headers["If-Range"] = validator
    try:
        response = sess.get(
            url,
            headers=headers,
            stream=True,
            allow_redirects=True,
            timeout=(policy.connect_timeout, policy.read_timeout),
        )
    except (requests.ConnectionError, requests.Timeout) as err:
        raise _Retry(describe_connection_error(err)) from None
    except requests.RequestException as err:
        raise DownloadError(f"cannot download {name} from {url}: {one_line(err)}") from None

    with response:
        code = response.status_code
        if code == 416 and part.size:
            match = _UNSATISFIED_RANGE.search(response.headers.get("Content-Range", ""))
            if match and int(match.group(1)) == part.size:
                return True  # the .part already holds the whole file
            status(f"{name}: the server rejected the resume; starting over")
            part.reset()
            raise _Retry("resume rejected (HTTP 416)", 416)
        if code >= 500 or code in _RETRY_STATUS:
            raise _Retry(f"HTTP {code} {response.reason or ''}".strip(), code)
        if code not in (200, 206):
            raise _http_error(url, name, code, response.reason)

        total: int | None
        if code == 206:
            match = _CONTENT_RANGE.search(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != part.size:
                status(
                    f"{name}: the server answered the resume with the wrong range; starting over"
                )
                part.reset()
                raise _Retry("bad Content-Range", 206)
            total = None if match.group(3) == "*" else int(match.group(3))
        else:
            if part.size:
                status(f"{name}: the server does not resume (no Range support); starting over")
                part.reset()
            total = _int_header(response, "Content-Length")
        if response.headers.get("Content-Encoding", "identity").lower() != "identity":
            total = None  # sizes on the wire are not file sizes then
        if total is not None and expected_size is not None and total != expected_size:
            raise ChecksumError(
                f"{name}: {url} serves {total} bytes, the registry expects {expected_size}",
                "the mirror or URL holds a different file; check ADM_BASE_URL",
            )
        if part.size == 0:
            part.remember(url, response)
        if on_progress is not None:
            on_progress(part.size, total)

        mode = "ab" if part.size else "wb"
        part.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(part.path, mode) as fh:
                for chunk in response.iter_content(chunk_size=policy.chunk_size):
                    if not chunk:
                        continue
                    write_chunk(fh, chunk)
                    part.hasher.update(chunk)
                    part.size += len(chunk)
                    if on_progress is not None:
                        on_progress(part.size, total)
                fh.flush()
                os.fsync(fh.fileno())
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as err:
            raise _Retry(describe_connection_error(err)) from None
        if total is not None and part.size < total:
            raise _Retry(f"connection closed after {part.size} of {total} bytes")
        if total is not None and part.size > total:
            part.reset()
            raise _Retry(f"server sent more than the {total} bytes it announced")
        return True


def write_chunk(fh, chunk: bytes) -> None:
    """One write to the ``.part`` (a seam for tests that simulate a full disk)."""
    fh.write(chunk)


def describe_connection_error(err: BaseException) -> str:
    """A few words for a requests/urllib3 connection failure instead of its nested repr."""
    inner: BaseException = err
    for _ in range(6):
        nxt = getattr(inner, "reason", None)
        if (
            not isinstance(nxt, BaseException)
            and inner.args
            and isinstance(inner.args[0], BaseException)
        ):
            nxt = inner.args[0]
        if not isinstance(nxt, BaseException):
            break
        inner = nxt
    text = f"{type(inner).__name__} {inner}".lower()
    if (
        "nameresolution" in text
        or "name or service not known" in text
        or "getaddrinfo" in text
        or "name resolution" in text
        or "nodename nor servname" in text
    ):
        return "DNS lookup failed"
    if "refused" in text:
        return "connection refused"
    if "timeout" in text or "timed out" in text:
        return "timed out"
    if (
        "incompleteread" in text
        or "connection broken" in text
        or "reset by peer" in text
        or "remotedisconnected" in text
        or "aborted" in text
    ):
        return "connection dropped mid-transfer"
    return one_line(inner)


def _give_up(url: str, name: str, problem: _Retry, attempts: int, kept: int) -> DownloadError:
    keep = f"; {_mb(kept)} kept, re-running resumes" if kept else ""
    tries = f"{attempts} attempt" + ("s" if attempts != 1 else "")
    if problem.status is not None and problem.status >= 500:
        return DownloadError(
            f"{url} kept failing with {problem.reason} ({tries}){keep}",
            f"the server has trouble; try again later, set ADM_BASE_URL to a mirror, or "
            f"fetch the file elsewhere and run `adm download {name} --from-file PATH`",
        )
    host = urlsplit(url).netloc or url
    return DownloadError(
        f"cannot download {name} from {host}: {problem.reason} ({tries}){keep}",
        f"check the network, set ADM_BASE_URL to a reachable mirror, or fetch {url} elsewhere "
        f"and run `adm download {name} --from-file PATH`",
    )


def _http_error(url: str, name: str, code: int, reason: str | None) -> DownloadError:
    text = f"HTTP {code} {reason or ''}".strip()
    if code == 404:
        return DownloadError(
            f"{url} was not found ({text})",
            f"the URL (or ADM_BASE_URL mirror) does not have {name}; "
            f"import a copy with `adm download {name} --from-file PATH`",
        )
    return DownloadError(
        f"{url} refused the download ({text})",
        f"import a copy with `adm download {name} --from-file PATH`",
    )


def _disk_error(err: OSError, part_file: Path, name: str, kept: int) -> DownloadStorageError:
    """The cache cannot be written: an environment failure (exit 1), which no retry fixes."""
    if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return DownloadStorageError(
            f"disk full while writing {part_file} ({_mb(kept)} kept for resume)",
            f"free some space (or point --dir / ADM_HOME at a larger disk) and re-run "
            f"`adm download {name}` to resume",
        )
    return DownloadStorageError(
        f"cannot write {part_file}: {err.strerror or err}",
        "check the permissions of the cache folder, or pass --dir / set ADM_HOME",
    )


def _int_header(response: requests.Response, name: str) -> int | None:
    try:
        return int(response.headers[name])
    except (KeyError, ValueError):
        return None


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n} bytes"
