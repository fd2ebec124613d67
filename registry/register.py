"""Atomic registration of experts (mixed into ``Registry``).

Contract:
- ``register`` reserves (name, version) with a 'registering' row (invisible to readers,
  owner = host:pid, staging dir recorded), copies the source directory into staging,
  validates the STAGED copy (LoRA against the stored base), drops pickle files, hashes
  the files, runs ``fit(staged_dir, draft_record)`` (may return ``(router, key, bytes,
  meta)`` artifacts), renames the directory into place, writes the artifact files, and
  only then flips the row to 'ready' (with its artifact rows) in one final transaction.
- Any exception undoes everything written (files, row) and is re-raised unchanged.
- A crash leaves a 'registering' row and files; ``stale`` tells ``recover`` which rows are
  dead: owner process gone (same host, ``pid_alive``) or older than the grace period.
- ``base(name)`` is the registered base model ``name``, or a ``ValidationError`` saying how
  to register it (what ``register(..., base=name)`` checks); ``routing_base(name)`` the name
  of the base requests are served over, None when no base is registered (endpoint and
  whole-model experts only).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import uuid
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from . import validate as V
from .cost import norm_cost
from .db import Artifact, Expert, as_utc, utcnow
from .endpoint import read_endpoint, write_endpoint_dir
from .errors import ConflictError, NotFoundError, RegistryError, ValidationError
from .files import PICKLE_SUFFIXES
from .records import ExpertRecord, norm_examples, norm_strings
from .store import copy_tree, sha256_bytes, sha256_tree, tree_digest

log = logging.getLogger(__name__)
KINDS = ("base", "lora", "model", "endpoint")
OWNER = f"{socket.gethostname()}:{os.getpid()}"
BUSY_GRACE_S = 600
BASE_HINT = "register it first with: composer register PATH --kind base --name {}"


def pid_alive(pid: int) -> bool:
    """Whether a process of this host still runs (another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def stale(row: Expert, grace_s: float, now: datetime) -> bool:
    if (now - as_utc(row.created_at)).total_seconds() >= grace_s:
        return True
    host, _, pid = str((row.config or {}).get("_registering", {}).get("owner", "")).rpartition(":")
    mine = host == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid()
    return mine and not pid_alive(int(pid))


class RegisterMixin:
    def register(
        self,
        path: str | Path,
        name: str,
        kind: str = "lora",
        base: str | None = None,
        description: str = "",
        tags=(),
        domains=(),
        examples=(),
        new_version: bool = False,
        source: str | None = None,
        fit=None,
        cost: dict | None = None,
    ) -> ExpertRecord:
        V.validate_name(name)
        if kind not in KINDS:
            raise ValidationError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        src = Path(path).expanduser()
        if not src.is_dir():
            raise ValidationError(f"{src} is not a directory")
        if base is not None and kind != "lora":
            raise ValidationError(f"base applies to kind 'lora' only, not {kind!r}")
        if not isinstance(description, str) or "\x00" in description:
            raise ValidationError("description must be a string without NUL characters")
        meta = {
            "description": description,
            "tags": norm_strings(tags, "tags"),
            "domains": norm_strings(domains, "domains"),
            "examples": norm_examples(examples),
            "source": str(source) if source else str(src.resolve()),
        }
        cost = norm_cost(cost)
        if kind == "lora":  # cheap checks on the source first: no copy of a directory bound to fail
            V.check_lora_files(src)
        elif kind == "endpoint":
            read_endpoint(src)
        else:
            V.check_model_files(src)
        base_rec = self._resolve_base(src, base) if kind == "lora" else None
        staged = self.store.stage_dir()
        written: list[str] = []
        rid = None
        try:
            rid, version, uri = self._reserve(name, kind, new_version, base_rec, staged, meta)
            copy_tree(src, staged)
            cfg = self._validate_staged(staged, src, base_rec, kind)
            if cost:
                cfg["cost"] = cost
            for p in [p for p in staged.rglob("*") if p.is_file() and p.suffix in PICKLE_SUFFIXES]:
                p.unlink()  # never stored: pickle files beside the safetensors weights
            sha = sha256_tree(staged)
            arts = self._fit(fit, staged, rid, version, uri, name, kind, base_rec, cfg, sha, meta)
            self.store.commit_dir(staged, uri)
            written.append(uri)
            rows = []
            for router, key, data, ameta in arts:
                rel = self._artifact_uri(rid, router, key, ameta)
                self.store.write_file_atomic(rel, data)
                written.append(rel)
                rows.append(
                    Artifact(
                        expert_id=rid, router=router, key=key, uri=rel, sha256=sha256_bytes(data), meta=ameta
                    )
                )
            self._finalize(rid, cfg, sha, rows, new_version)
        except BaseException:
            self._undo(rid, [staged.relative_to(self.store.root).as_posix(), *written])
            raise
        return self.get(name, version)

    def register_endpoint(self, name: str, endpoint: dict, **kw) -> ExpertRecord:
        """Register an endpoint expert from its spec (`registry.endpoint`): `register` on a
        directory holding only its `endpoint.json`; `kw` as for `register` (no path, kind, base)."""
        tmp = self.store.stage_dir()
        try:
            write_endpoint_dir(tmp, endpoint)
            kw.setdefault("source", endpoint.get("url") if isinstance(endpoint, dict) else None)
            return self.register(tmp, name, kind="endpoint", **kw)
        finally:
            self.store.remove(tmp.relative_to(self.store.root).as_posix())

    @staticmethod
    def _validate_staged(staged: Path, src: Path, base_rec: ExpertRecord | None, kind: str) -> dict:
        try:
            if kind == "endpoint":
                return {"endpoint": read_endpoint(staged)}
            if base_rec is None:
                return V.validate_model_dir(staged)
            cfg = V.validate_lora_dir(staged, base_rec.path)
            return {**cfg, "base_model": base_rec.name, "base_version": base_rec.version}
        except ValidationError as e:  # name the user's directory, not the staging copy
            raise ValidationError(str(e).replace(str(staged), str(src))) from None

    def base(self, name: str) -> ExpertRecord:
        """The registered base model `name`; `ValidationError` (with the fix) if there is none."""
        try:
            rec = self.get(name)
        except NotFoundError:
            raise ValidationError(
                f"base model '{name}' is not registered; {BASE_HINT.format(name)}"
            ) from None
        if rec.kind != "base":
            raise ValidationError(f"'{name}' is a {rec.kind} expert, not a base model (kind 'base')")
        return rec

    def default_base(self, name: str | None = None) -> ExpertRecord:
        """`base(name)`; without a name, the only registered base (`ValidationError` if none or several)."""
        if name:
            return self.base(name)
        bases = self.list(kind="base")
        if len(bases) != 1:
            raise ValidationError(
                "no base model is registered"
                if not bases
                else f"several base models are registered ({', '.join(b.name for b in bases)}): "
                "name one (base=..., COMPOSER_BASE or --base)"
            )
        return bases[0]

    def routing_base(self, name: str | None = None) -> str | None:
        """The base model requests are served over: `default_base(name).name`, or None when none
        is named and none is registered (a registry of endpoint and whole-model experts only)."""
        if not name and not self.list(kind="base"):
            return None
        return self.default_base(name).name

    def _resolve_base(self, src: Path, base: str | None) -> ExpertRecord:
        if base is None:
            want = V.read_adapter_config(src).get("base_model_name_or_path")
            if not want or not isinstance(want, str):
                raise ValidationError(
                    "adapter_config.json has no base_model_name_or_path; pass base=NAME (--base)"
                )
            p = Path(want).expanduser()
            found = [
                b
                for b in self.list(kind="base")
                if want in (b.name, b.source)
                or (p.is_absolute() and p.exists() and Path(b.source).exists() and p.samefile(b.source))
            ]
            if len(found) > 1:
                raise ValidationError(
                    f"base model '{want}' matches several registered bases "
                    f"({', '.join(b.name for b in found)}); pass base=NAME (--base)"
                )
            if not found:
                slug = re.sub(r"[^a-z0-9._-]+", "-", Path(want).name.lower()).strip("-._")[:64] or "base"
                raise ValidationError(f"base model '{want}' is not registered; {BASE_HINT.format(slug)}")
            return found[0]
        return self.base(base)

    def _reserve(self, name, kind, new_version, base_rec, staged: Path, meta) -> tuple[int, int, str]:
        now = utcnow()
        try:
            with self._tx() as s:
                rows = s.scalars(select(Expert).where(Expert.name == name)).all()
                ready = [r for r in rows if r.status == "ready"]
                busy = [r for r in rows if r.status == "registering" and not stale(r, BUSY_GRACE_S, now)]
                if ready and not new_version:
                    latest = max(r.version for r in ready)
                    raise ConflictError(
                        f"expert '{name}' already exists (version {latest}); "
                        "pass new_version=True (--new-version) to add a version"
                    )
                if busy and not new_version:
                    raise ConflictError(f"expert '{name}' is being registered right now; try again later")
                if ready and ready[0].kind != kind:
                    raise ConflictError(
                        f"expert '{name}' is of kind {ready[0].kind!r}; a new version cannot be {kind!r}"
                    )
                version = max((r.version for r in rows), default=0) + 1
                uri = f"objects/{kind}/{name}/v{version}-{uuid.uuid4().hex[:8]}"
                owner = {"owner": OWNER, "staging": staged.relative_to(self.store.root).as_posix()}
                row = Expert(
                    name=name,
                    version=version,
                    kind=kind,
                    uri=uri,
                    status="registering",
                    base_model=base_rec.name if base_rec else None,
                    config={"_registering": owner},
                    sha256={},
                    digest="",
                    scores={},
                    created_at=now,
                    **meta,
                )
                s.add(row)
                s.flush()
                return row.id, version, uri
        except IntegrityError:
            raise ConflictError(f"expert '{name}' is being registered concurrently; try again") from None

    def _fit(self, fit, staged, rid, version, uri, name, kind, base_rec, cfg, sha, meta) -> list[tuple]:
        if fit is None:
            return []
        draft = ExpertRecord(
            id=rid,
            name=name,
            version=version,
            kind=kind,
            base_model=base_rec.name if base_rec else None,
            uri=uri,
            sha256=sha,
            digest=tree_digest(sha),
            scores={},
            config=cfg,
            status="registering",
            created_at=utcnow(),
            path=staged,
            **meta,
        )
        return [self._check_artifact(*item) for item in fit(staged, draft) or ()]

    def _finalize(self, rid: int, cfg: dict, sha: dict, arts: list[Artifact], new_version: bool) -> None:
        with self._tx() as s:
            row = s.get(Expert, rid)
            if row is None or row.status != "registering":
                raise RegistryError(f"registration {rid} was cancelled (its row was recovered)")
            if (
                not new_version
                and s.scalars(
                    select(Expert.id).where(Expert.name == row.name, Expert.status == "ready")
                ).first()
                is not None
            ):
                raise ConflictError(f"expert '{row.name}' was registered concurrently")
            row.config, row.sha256, row.digest = cfg, sha, tree_digest(sha)
            row.status, row.created_at = "ready", utcnow()
            s.add_all(arts)

    def _undo(self, rid: int | None, rels: list[str]) -> None:
        try:
            if rid is not None:
                with self._tx() as s:
                    row = s.get(Expert, rid)
                    if row is not None and row.status == "registering":
                        s.delete(row)
        except Exception:
            log.exception("could not delete registering row %s", rid)
        for rel in rels:
            try:
                self.store.remove(rel)
            except Exception:
                log.exception("could not remove %s", rel)
