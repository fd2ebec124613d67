"""Runtime registration over HTTP: an uploaded archive or a confined server-side path.

Contract: `register_expert(composer, request, settings, archive=None)` registers the expert
described by `request` (a `RegisterRequest`): an endpoint expert from its `endpoint` object
through `Composer.register_endpoint` (allowlist, address and `/models` checks first), any
other through `Composer.register` (validation,
post-hoc fitting and the database row commit together, or nothing is stored) from either
`archive` (zip/tar bytes, unpacked safely into `<home>/uploads/<host>-<pid>-*`, removed
when the registration ends; `sweep_uploads(home)` removes those of processes that died
mid-registration, and runs before every upload and when a backend starts) or `request.path`,
which must resolve (symlinks followed) inside one of `settings.allowed_roots`
(`PathNotAllowed` otherwise; none configured = path registration disabled). Error messages
name the upload as `<upload>`, never the server's paths.
`public_record(rec, examples=False, quarantined=None)` is a record as the API shows it: no
server paths; "quarantined" is {reason, since} when its version is in `quarantined`
(`Registry.quarantined()`), else null.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

from composer.serving.archive import UploadError, unpack
from composer.serving.errors import PathNotAllowed
from composer.serving.schemas import RegisterRequest
from composer.settings import Settings
from registry import RegistryError
from registry.records import ExpertRecord
from registry.register import pid_alive

HIDDEN = ("path", "uri", "source")
UPLOADS = "uploads"


def sweep_uploads(home: str | Path) -> list[str]:
    """Remove upload dirs left by dead processes of this host; returns their names."""
    root, host, gone = Path(home) / UPLOADS, socket.gethostname(), []
    for d in root.iterdir() if root.is_dir() else ():
        owner, _, pid = d.name.rpartition("-")[0].rpartition("-")
        if owner == host and pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
            gone.append(d.name)
    return gone


def upload_dir(home: str | Path) -> tempfile.TemporaryDirectory:
    root = Path(home) / UPLOADS
    root.mkdir(parents=True, exist_ok=True)
    sweep_uploads(home)
    return tempfile.TemporaryDirectory(prefix=f"{socket.gethostname()}-{os.getpid()}-", dir=root)


def confined(path: str, roots: tuple[str, ...]) -> Path:
    if not roots:
        raise PathNotAllowed(
            "server-side path registration is disabled: set COMPOSER_ALLOWED_ROOTS "
            "on the server, or upload an archive"
        )
    p = Path(path).expanduser()
    resolved = p.resolve()
    if not any(resolved.is_relative_to(Path(r).expanduser().resolve()) for r in roots):
        raise PathNotAllowed("the path is outside the allowed roots (COMPOSER_ALLOWED_ROOTS)")
    if not resolved.is_dir():
        raise UploadError("the path is not a directory on the server")
    return resolved


def register_expert(
    composer, request: RegisterRequest, settings: Settings, archive: bytes | None = None
) -> ExpertRecord:
    if (request.kind == "endpoint") != (request.endpoint is not None):
        raise UploadError("kind 'endpoint' takes an 'endpoint' object ({url, model, ...}), and only it does")
    if request.endpoint is not None:
        if archive is not None or request.path is not None:
            raise UploadError(
                "an endpoint expert is registered from its 'endpoint' object: no archive or path"
            )
        return composer.register_endpoint(
            request.name, request.endpoint.model_dump(), **request.registry_kwargs(endpoint=True)
        )
    if (archive is None) == (request.path is None):
        raise UploadError(
            "give either an archive upload or a server-side path, not both"
            if archive is not None
            else "give an archive upload (multipart field 'archive') or a server-side 'path'"
        )
    with upload_dir(composer.registry.home) as tmp:
        src = (
            unpack(archive, tmp, settings.max_upload_bytes)
            if archive is not None
            else confined(request.path, settings.allowed_roots)
        )
        try:
            return composer.register(src, request.name, **request.registry_kwargs())
        except (RegistryError, ValueError) as e:
            msg = str(e).replace(str(Path(tmp).resolve()), "<upload>").replace(tmp, "<upload>")
            if msg == str(e):
                raise
            raise type(e)(msg) from None


def public_record(rec: ExpertRecord, examples: bool = False, quarantined: dict | None = None) -> dict:
    """The record without server paths; examples only as a count unless asked for."""
    d = rec.to_dict()
    for key in HIDDEN:
        d.pop(key, None)
    if not examples:
        d["examples"] = len(d.get("examples") or [])
    d["quarantined"] = (quarantined or {}).get((rec.name, rec.version))
    return d
