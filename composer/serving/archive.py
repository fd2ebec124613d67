"""Unpack an uploaded adapter/model archive (zip or tar[.gz|.bz2|.xz]) safely.

Contract: `unpack(data, dest, max_bytes)` writes the archive's regular files under `dest`
(the caller owns `dest` and removes it) and returns the directory holding the expert (the single top-level folder if there is one,
else `dest`). It refuses, with an `UploadError` naming the member and writing nothing
outside `dest`: absolute paths and `..` components (zip-slip), links of any kind, device
files, more than `MAX_MEMBERS` members, and a total unpacked size over `max_bytes`
(counted while writing, so a lying header cannot bomb the disk). `TooLarge` (a subclass)
marks size limits, so HTTP can answer 413. `pack(directory)` makes such an archive (one
top folder), for clients and tests.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO

MAX_MEMBERS = 10_000
CHUNK = 1 << 20


class UploadError(ValueError):
    """The upload is not an archive Composer will unpack."""


class TooLarge(UploadError):
    """The upload or its unpacked content exceeds the configured limit."""


def _safe_name(name: str) -> PurePosixPath:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or name.startswith(("/", "\\")) or (p.parts and ":" in p.parts[0]):
        raise UploadError(f"archive member {name!r} has an absolute path")
    if ".." in p.parts:
        raise UploadError(f"archive member {name!r} escapes the archive ('..')")
    return p


def _members(data: bytes) -> Iterator[tuple[PurePosixPath, bool, IO[bytes] | None]]:
    """(relative path, is_dir, reader) per member, after type checks."""
    buf = io.BytesIO(data)
    if zipfile.is_zipfile(buf):
        with zipfile.ZipFile(buf) as z:
            infos = z.infolist()
            if len(infos) > MAX_MEMBERS:
                raise UploadError(f"archive has {len(infos)} members (limit {MAX_MEMBERS})")
            for info in infos:
                mode = info.external_attr >> 16
                if mode and (mode & 0o170000) not in (0, 0o100000, 0o040000):
                    raise UploadError(f"archive member {info.filename!r} is a link or special file")
                yield _safe_name(info.filename), info.is_dir(), None if info.is_dir() else z.open(info)
        return
    buf.seek(0)
    if not tarfile.is_tarfile(buf):
        raise UploadError("the upload is neither a zip nor a tar archive")
    buf.seek(0)
    with tarfile.open(fileobj=buf, mode="r:*") as tar:
        for count, m in enumerate(tar, 1):
            if count > MAX_MEMBERS:
                raise UploadError(f"archive has more than {MAX_MEMBERS} members")
            if not (m.isfile() or m.isdir()):
                raise UploadError(f"archive member {m.name!r} is a link or special file")
            yield _safe_name(m.name), m.isdir(), None if m.isdir() else tar.extractfile(m)


def pack(directory: str | Path, top: str = "adapter") -> bytes:
    """A zip of `directory`'s files under one top folder: what POST /v1/experts takes."""
    buf = io.BytesIO()
    root = Path(directory)
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for f in sorted(p for p in root.rglob("*") if p.is_file()):
            z.write(f, f"{top}/{f.relative_to(root).as_posix()}")
    return buf.getvalue()


def unpack(data: bytes, dest: str | Path, max_bytes: int) -> Path:
    if len(data) > max_bytes:
        raise TooLarge(f"upload is {len(data)} bytes (limit {max_bytes})")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    total, tops = 0, set()
    try:
        for rel, is_dir, reader in _members(data):
            if not rel.parts or rel.parts == (".",):
                continue
            tops.add(rel.parts[0])
            target = dest.joinpath(*rel.parts)
            if is_dir:
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with reader as src, open(target, "wb") as out:
                while chunk := src.read(CHUNK):
                    total += len(chunk)
                    if total > max_bytes:
                        raise TooLarge(f"archive unpacks to more than {max_bytes} bytes")
                    out.write(chunk)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
        raise UploadError(f"the archive is corrupt ({type(e).__name__})") from None
    if not tops:
        raise UploadError("the archive is empty")
    only = dest / next(iter(tops))
    return only if len(tops) == 1 and only.is_dir() else dest
