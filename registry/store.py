"""Artifact store: a local directory holding expert files and router artifacts.

Contract:
- Layout under ``root``: ``objects/<kind>/<name>/v<version>-<uuid8>/`` (one expert
  version's files), ``artifacts/<expert_id>/<router>/<key>.<uuid8>.<ext>`` (router
  artifacts), ``.staging/<uuid>/`` (work in progress), ``.registry-id`` (the owning
  database's identity: ``claim``). Paths handed around are relative
  ("rel") and always resolve inside ``root``.
- Writes are atomic: a directory is built in ``.staging`` and moved in with one
  ``os.rename`` (same filesystem); a file is written to a temp name, fsynced, ``os.replace``d.
- ``copy_tree(src, dst)`` copies regular files only (fsynced; ``.git`` skipped) and refuses
  symlinks that point outside ``src`` (Hugging Face cache blob links excepted).
- ``sweep(referenced, grace_s)`` deletes staging dirs, object dirs and artifact files that
  no record references and that are older than ``grace_s`` (crash recovery), and prunes the
  empty directories that leaves behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import uuid
from pathlib import Path

from .errors import ValidationError

STAGING = ".staging"
TOP_DIRS = ("objects", "artifacts", STAGING)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_tree(root: str | Path) -> dict[str, str]:
    """{posix relative path: sha256 hex} for every regular file under ``root``, sorted."""
    root = Path(root)
    out = {p.relative_to(root).as_posix(): sha256_file(p) for p in root.rglob("*") if p.is_file()}
    return dict(sorted(out.items()))


def tree_digest(files: dict[str, str]) -> str:
    """One digest for a file tree: sha256 of ``"<hex>  <relpath>\\n"`` lines sorted by path."""
    lines = "".join(f"{files[k]}  {k}\n" for k in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def _allowed_link(src_root: Path, target: Path) -> bool:
    """Inside the source dir, or (Hugging Face cache layout) into ``snapshots/../../blobs``."""
    if src_root in target.parents:
        return True
    blobs = src_root.parent.parent / "blobs"
    return src_root.parent.name == "snapshots" and blobs in target.parents


def copy_tree(src: str | Path, dst: str | Path) -> list[str]:
    """Copy the regular files of ``src`` into ``dst`` (fsynced); return their rel paths.

    ``.git`` is skipped; anything that is not a regular file is skipped; a symlink is
    followed only if it points inside ``src`` (or is a Hugging Face cache blob link),
    otherwise ValidationError.
    """
    src, dst = Path(src), Path(dst)
    src_root = src.resolve()
    copied = []
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        d = Path(dirpath)
        dirnames[:] = sorted(n for n in dirnames if n != ".git")
        for n in list(dirnames) + sorted(filenames):
            p = d / n
            rel = p.relative_to(src).as_posix()
            if p.is_symlink():
                target = p.resolve()
                if not _allowed_link(src_root, target):
                    raise ValidationError(f"symlink {rel} points outside {src} (to {target}); refusing")
                if n in dirnames:
                    raise ValidationError(f"symlinked directory {rel} in {src} is not supported")
            if n in dirnames or not p.is_file():
                continue
            out = dst / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, out)
            with open(out, "rb") as f:
                os.fsync(f.fileno())
            copied.append(rel)
    return copied


class ArtifactStore:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        for d in TOP_DIRS:
            (self.root / d).mkdir(parents=True, exist_ok=True)

    def path(self, rel: str) -> Path:
        p = (self.root / rel).resolve()
        if p != self.root and self.root not in p.parents:
            raise ValueError(f"path {rel!r} escapes the store root")
        return p

    def claim(self, owner: str) -> bool:
        """Record ``owner`` (a database identity) in the store; False if another owns it."""
        marker = self.root / ".registry-id"
        if not marker.exists():
            self.write_file_atomic(".registry-id", owner.encode())
        return marker.read_text().strip() == owner

    def stage_dir(self) -> Path:
        d = self.root / STAGING / uuid.uuid4().hex
        d.mkdir(parents=True)
        return d

    def commit_dir(self, staged: str | Path, rel: str) -> Path:
        """Move a staged directory to ``rel`` with one atomic rename; ``rel`` must not exist."""
        dst = self.path(rel)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists():
            raise FileExistsError(f"store path {rel!r} already exists")
        os.rename(staged, dst)
        _fsync_dir(dst.parent)
        return dst

    def write_file_atomic(self, rel: str, data: bytes) -> Path:
        dst = self.path(rel)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dst)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(dst.parent)
        return dst

    def remove(self, rel: str | Path) -> None:
        """Delete a file or directory tree (absent is fine), then prune empty parents."""
        p = self.path(str(rel))
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        self._prune(p.parent)

    def _prune(self, d: Path) -> None:
        keep = {self.root, *(self.root / t for t in TOP_DIRS)}
        while d not in keep and self.root in d.parents:
            try:
                d.rmdir()
            except OSError:
                return
            d = d.parent

    def sweep(self, referenced: set[str], grace_s: float) -> list[str]:
        """Remove unreferenced staging/object/artifact entries older than ``grace_s``."""
        now = time.time()
        removed: list[str] = []

        def old(p: Path) -> bool:
            try:
                return now - p.lstat().st_mtime >= grace_s
            except FileNotFoundError:
                return False

        candidates = list((self.root / STAGING).iterdir())
        candidates += [p for p in (self.root / "objects").glob("*/*/*")]
        candidates += [p for p in (self.root / "artifacts").glob("*/*/*")]
        for p in candidates:
            rel = p.relative_to(self.root).as_posix()
            if rel not in referenced and old(p):
                self.remove(rel)
                removed.append(rel)
        # empty leftovers (e.g. a name dir whose versions are all gone)
        for top in ("objects", "artifacts"):
            for d in sorted((self.root / top).glob("**/"), key=lambda x: -len(x.parts)):
                if d.is_dir() and not any(d.iterdir()) and old(d):
                    self._prune(d)
        return removed
