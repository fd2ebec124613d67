"""Uploaded archives unpack only regular files inside the destination, within the size limit."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from composer.serving.archive import TooLarge, UploadError, unpack


def tar_with(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def file_info(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def test_zip_and_tar_unpack_to_their_top_folder(tmp_path):
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("adapter/adapter_config.json", "{}")
        f.writestr("adapter/sub/w.bin", b"x" * 10)
    root = unpack(z.getvalue(), tmp_path / "z", max_bytes=1000)
    assert root == tmp_path / "z" / "adapter" and (root / "sub" / "w.bin").read_bytes() == b"x" * 10
    flat = unpack(tar_with(file_info("a.json", b"{}"), file_info("b.json", b"[]")), tmp_path / "t", 1000)
    assert flat == tmp_path / "t" and sorted(p.name for p in flat.iterdir()) == ["a.json", "b.json"]


@pytest.mark.parametrize(
    "name", ["../evil.json", "adapter/../../evil.json", "/etc/evil.json", "C:/evil.json"]
)
def test_paths_that_escape_are_refused(tmp_path, name):
    with pytest.raises(UploadError):
        unpack(tar_with(file_info(name, b"{}")), tmp_path / "d", 1000)
    assert not (tmp_path / "evil.json").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE])
def test_links_and_special_files_are_refused(tmp_path, kind):
    info = tarfile.TarInfo("adapter/link")
    info.type, info.linkname = kind, "/etc/passwd"
    with pytest.raises(UploadError, match="link or special"):
        unpack(tar_with((info, None)), tmp_path / "d", 1000)


def test_size_limits_count_unpacked_bytes(tmp_path):
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as f:
        f.writestr("a/zeros", b"\0" * 1_000_000)
    data = bomb.getvalue()
    assert len(data) < 10_000
    with pytest.raises(TooLarge, match="unpacks to more than"):
        unpack(data, tmp_path / "d", max_bytes=100_000)
    with pytest.raises(TooLarge):
        unpack(data, tmp_path / "e", max_bytes=len(data) - 1)


def test_garbage_is_not_an_archive(tmp_path):
    with pytest.raises(UploadError, match="neither a zip nor a tar"):
        unpack(b"definitely not an archive", tmp_path / "d", 1000)


def test_pack_round_trips_through_unpack(tmp_path):
    from composer.serving.archive import pack

    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "adapter_config.json").write_text("{}")
    (src / "sub" / "w.safetensors").write_bytes(b"\1\2\3")
    root = unpack(pack(src), tmp_path / "out", 10_000)
    assert root.name == "adapter"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "adapter_config.json",
        "sub/w.safetensors",
    ]
    assert (root / "sub" / "w.safetensors").read_bytes() == b"\1\2\3"
