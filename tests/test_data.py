"""Unit tests of shared/data.py and the machinery it uses (shared/downloads.py): cache, mirror, checksums, zip
extraction, atomic writes and offline errors."""

import hashlib
import os
import re
import types
import zipfile
from pathlib import Path

import pooch
import pytest

from shared import data, downloads

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def course_file(tmp_path, monkeypatch):
    """A fake course file registered under a fake URL, with an empty cache and no mirror."""
    content = b"hello course\n"
    monkeypatch.setenv(downloads.CACHE_VARIABLE, str(tmp_path / "cache"))
    monkeypatch.delenv(downloads.MIRROR_VARIABLE, raising=False)
    remote = downloads.Remote("http://127.0.0.1:9/unreachable/fake.txt", hashlib.sha256(content).hexdigest())
    monkeypatch.setitem(downloads.DATASETS, "fake.txt", remote)
    return content


def test_unknown_name_lists_the_known_files():
    with pytest.raises(KeyError, match="the-verdict.txt"):
        data.fetch("no-such-file.txt")


def test_mirror_is_used_and_verified_into_the_cache(course_file, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "fake.txt").write_bytes(course_file)
    monkeypatch.setenv(downloads.MIRROR_VARIABLE, str(mirror))
    path = data.fetch("fake.txt")
    assert path == tmp_path / "cache" / "fake.txt"
    assert path.read_bytes() == course_file
    (mirror / "fake.txt").unlink()
    assert data.fetch("fake.txt").read_bytes() == course_file  # now served from the cache


def test_corrupt_mirror_copy_is_rejected_and_not_left_in_the_cache(course_file, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "fake.txt").write_bytes(b"tampered\n")
    monkeypatch.setenv(downloads.MIRROR_VARIABLE, str(mirror))
    with pytest.raises(downloads.DataUnavailableError, match="sha256"):
        data.fetch("fake.txt")
    assert not list((tmp_path / "cache").glob("*fake.txt*"))


@pytest.mark.parametrize("name", sorted(downloads.DATASETS))
def test_a_truncated_copy_of_each_course_file_is_refused_and_not_kept(name, tmp_path, monkeypatch):
    """Every real course file (Tiny Shakespeare included) is checked against its own published sha256."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / name).write_bytes(b"the first few bytes of the file, then nothing")
    monkeypatch.setenv(downloads.MIRROR_VARIABLE, str(mirror))
    monkeypatch.setenv(downloads.CACHE_VARIABLE, str(tmp_path / "cache"))
    with pytest.raises(downloads.DataUnavailableError, match=f"{name} from the mirror .* has sha256 .*corrupt"):
        data.fetch(name)
    assert not list((tmp_path / "cache").glob(f"*{name}*"))


def test_offline_without_mirror_says_what_to_put_where(course_file, tmp_path, monkeypatch):
    # pooch waits 1, 2, then 3 s between its attempts; the attempts are made, the waits are only counted.
    waits = []
    monkeypatch.setattr(pooch.core, "time", types.SimpleNamespace(sleep=waits.append))
    with pytest.raises(downloads.DataUnavailableError) as error:
        data.fetch("fake.txt")
    assert len(waits) == 3, "three retries after the first attempt"
    message = str(error.value)
    assert str(tmp_path / "cache" / "fake.txt") in message
    assert downloads.MIRROR_VARIABLE in message
    assert not (tmp_path / "cache" / "fake.txt").exists()
    # A short error: the cause is named in the message, and the network library's chain is not shown.
    assert error.value.__cause__ is None and error.value.__suppress_context__
    assert "Error: " in message.splitlines()[1]


def test_zip_member_is_extracted_to_the_chosen_path_only(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../escape.txt", b"evil")
        zf.writestr("wanted.txt", b"good")
    target = tmp_path / "out" / "wanted.txt"
    downloads.extract_member(archive, "wanted.txt", target)
    assert target.read_bytes() == b"good"
    assert not (tmp_path.parent / "escape.txt").exists()
    with pytest.raises(downloads.DataUnavailableError, match="no member"):
        downloads.extract_member(archive, "missing.txt", tmp_path / "out" / "missing.txt")


def test_zip_without_the_member_is_refused(tmp_path):
    archive = tmp_path / "sms.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../evil.txt", "x")
    with pytest.raises(downloads.DataUnavailableError, match="no member"):
        downloads.extract_member(archive, "SMSSpamCollection", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# A zip file starts with "PK\x03\x04": a file that starts like one and is not must be refused all the same.
@pytest.mark.parametrize("content", [b"this is not a zip file", b"PK\x03\x04 this is not really a zip file"],
                         ids=["not-a-zip", "zip-signature-then-junk"])
def test_corrupt_zip_is_reported_and_removed(tmp_path, content):
    archive = tmp_path / "broken.zip"
    archive.write_bytes(content)
    with pytest.raises(downloads.DataUnavailableError, match="not a valid zip") as error:
        downloads.extract_member(archive, "x", tmp_path / "x")
    assert not archive.exists() and not (tmp_path / "x").exists()
    assert error.value.__cause__ is None and error.value.__suppress_context__  # the reason is in the message


def test_real_course_files_come_from_the_mirror_with_their_published_hashes(tmp_path, monkeypatch):
    if not os.environ.get(downloads.MIRROR_VARIABLE):
        pytest.skip("set COURSE_DATA_MIRROR (CI points it at ../shared/offline/data)")
    monkeypatch.setenv(downloads.CACHE_VARIABLE, str(tmp_path))
    for name, remote in downloads.DATASETS.items():
        assert data.sha256_of(data.fetch(name)) == remote.sha256


def test_write_atomically_replaces_whole_files_and_leaves_no_partial_file(tmp_path):
    target = tmp_path / "sub" / "file.bin"
    data.write_atomically(target, b"first")
    data.write_atomically(target, b"second")
    assert target.read_bytes() == b"second"
    assert target.stat().st_mode & 0o777 == 0o644  # an ordinary file, not mkstemp's owner-only one
    with pytest.raises(TypeError):
        data.write_atomically(target, "not bytes")  # fails after the temporary file exists
    assert target.read_bytes() == b"second" and sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]


def test_every_name_the_course_imports_from_data_is_there():
    """Modules and notebooks import chapter 2's data helpers from shared.data; write_atomically lives in
    shared.downloads and is offered there too."""
    imported = set()
    for path in [*ROOT.glob("shared/*.py"), *ROOT.glob("ch0*/*.ipynb")]:
        for names in re.findall(r"from shared\.data import ([\w, ]+)", path.read_text(encoding="utf-8")):
            imported.update(name.strip() for name in names.split(",") if name.strip())
    assert {"fetch", "sha256_of", "write_atomically"} <= imported
    assert [name for name in sorted(imported) if not hasattr(data, name)] == []
    assert data.write_atomically is downloads.write_atomically
