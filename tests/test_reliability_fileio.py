"""fileio: saves are whole or absent (unique temp names, cleaned up on any failure, a full disk
reported in one line) and JSON files that are not UTF-8, not JSON or not an object are reported in
one line naming the file."""

import errno
import os
import threading

import numpy as np
import pytest

import videomae_np as vm
from conftest import TINY
from videomae_np import fileio


def _one_line(e):
    assert "\n" not in str(e), str(e)
    return str(e)


def test_temp_names_are_unique_and_in_the_target_folder(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((str(src), str(dst)))
        return real_replace(src, dst)
    monkeypatch.setattr(fileio.os, "replace", spy)
    target = tmp_path / "model.safetensors"
    fileio.atomic_write_bytes(target, b"a")
    fileio.atomic_write_bytes(target, b"b")
    assert target.read_bytes() == b"b"
    (src1, dst1), (src2, dst2) = seen
    assert src1 != src2 and dst1 == dst2 == str(target)
    assert os.path.dirname(src1) == str(tmp_path)
    assert str(os.getpid()) in os.path.basename(src1)
    assert not src1.endswith("model.safetensors.tmp")   # the old shared name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_saves_of_config_weights_and_processor_go_through_unique_temp_names(tmp_path, monkeypatch):
    temps = []
    real_replace = os.replace
    monkeypatch.setattr(fileio.os, "replace", lambda s, d: (temps.append(os.path.basename(s)),
                                                            real_replace(s, d))[1])
    vm.VideoMAEConfig(**TINY).save_pretrained(tmp_path / "c")
    vm.VideoMAEModel(vm.VideoMAEConfig(**TINY)).save_pretrained(tmp_path / "m")
    vm.VideoMAEImageProcessor().save_pretrained(tmp_path / "p")
    assert len(temps) == 4 and len(set(temps)) == 4
    assert all(t.startswith(".") and t.endswith(".tmp") and str(os.getpid()) in t for t in temps)


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, exc):
    target = tmp_path / "config.json"
    target.write_text("old")

    def write(f):
        f.write(b"half of the new")
        raise exc
    with pytest.raises(type(exc)):
        fileio.atomic_write(target, write)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def _disk_full(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_is_one_line_naming_the_file_and_leaves_nothing_behind(tmp_path, monkeypatch):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old")
    monkeypatch.setattr(fileio.os, "fsync", _disk_full)
    with pytest.raises(OSError) as e:
        fileio.atomic_write_bytes(target, b"new")
    msg = _one_line(e.value)
    assert isinstance(e.value, fileio.DiskFullError) and e.value.errno == errno.ENOSPC
    assert str(target) in msg and "disk full" in msg and "no space left" in msg
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_disk_full_during_model_save_is_reported_and_the_folder_stays_clean(tmp_path, monkeypatch):
    model = vm.VideoMAEModel(vm.VideoMAEConfig(**TINY))
    model.save_pretrained(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    monkeypatch.setattr(fileio.os, "fsync", _disk_full)
    with pytest.raises(fileio.DiskFullError, match="model.safetensors: disk full"):
        vm.VideoMAEModel(vm.VideoMAEConfig(**TINY), seed=1).save_pretrained(tmp_path)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    back = vm.VideoMAEModel.from_pretrained(tmp_path)
    assert all(np.array_equal(back.params[k], model.params[k]) for k in model.params)


def test_many_threads_writing_one_file_never_collide(tmp_path):
    target, errors = tmp_path / "x.json", []

    def work(i):
        try:
            for _ in range(20):
                fileio.atomic_write_text(target, f"{i}" * 1000)
        except Exception as e:  # pragma: no cover - the failure being tested for
            errors.append(e)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    text = target.read_text()
    assert len(text) == 1000 and len(set(text)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


@pytest.mark.parametrize("raw, pattern", [
    (b'{"a": "\xff\xfe"}', r"not valid JSON: not UTF-8 text \(byte 0xff at offset 7\)"),
    (b"{not json", "not valid JSON: Expecting property name"),
    (b"[1, 2]", "must hold a JSON object, found list"),
    (b"[" * 100000 + b"]" * 100000, "not valid JSON"),
])
def test_read_json_object_errors_are_one_line_naming_the_file(tmp_path, raw, pattern):
    f = tmp_path / "some.json"
    f.write_bytes(raw)
    with pytest.raises(ValueError, match=pattern) as e:
        fileio.read_json_object(f)
    assert str(f) in _one_line(e.value)


def test_config_and_processor_files_with_invalid_utf8_name_the_file(tmp_path):
    (tmp_path / "config.json").write_bytes(b'{"model_type": "videomae", "note": "caf\xe9"}')
    with pytest.raises(ValueError, match="config.json is not valid JSON: not UTF-8") as e:
        vm.VideoMAEConfig.from_pretrained(tmp_path)
    assert str(tmp_path) in _one_line(e.value)
    (tmp_path / "preprocessor_config.json").write_bytes(b'{"do_resize": true, "x": "\xc3"}')
    with pytest.raises(ValueError, match="preprocessor_config.json is not valid JSON: not UTF-8"):
        vm.VideoMAEImageProcessor.from_pretrained(tmp_path)
