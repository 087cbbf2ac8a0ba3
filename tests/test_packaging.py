"""A built wheel carries every sub-package, and shipped files are found outside a clone through DIFFGAN_DATA."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import diffgan_lib

ROOT = Path(diffgan_lib.__file__).resolve().parents[1]


@pytest.mark.skipif(not (ROOT / "pyproject.toml").is_file(), reason="needs the source tree")
def test_the_wheel_holds_every_sub_package(tmp_path):
    had_build = (ROOT / "build").exists()
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path)
    if not had_build:                               # setuptools builds in the source tree: leave it as it was
        shutil.rmtree(ROOT / "build", ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("diffgan_lib-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {str(p.relative_to(ROOT)) for p in (ROOT / "diffgan_lib").rglob("__init__.py")}
    assert packages and packages <= names, sorted(packages - names)
    assert "diffgan_lib/course/exercises/nb01.py" in names


def test_shipped_files_are_found_through_DIFFGAN_DATA_or_named_in_one_line(tmp_path, monkeypatch):
    from diffgan_lib.data.files import shipped_path
    (tmp_path / "pretrained").mkdir()
    (tmp_path / "pretrained" / "m.pth").write_bytes(b"x")
    monkeypatch.setenv("DIFFGAN_DATA", str(tmp_path))
    assert shipped_path("pretrained/m.pth") == tmp_path / "pretrained" / "m.pth"
    with pytest.raises(FileNotFoundError, match="set DIFFGAN_DATA") as err:
        shipped_path("pretrained/missing.pth")
    assert "\n" not in str(err.value)


def test_an_old_shipped_name_still_finds_the_renamed_file():
    from diffgan_lib import load_checkpoint
    old = ROOT / "data" / "pretrained" / "phantoms32_default_10k.pth"
    if old.exists():
        pytest.skip("the old name exists on disk here")
    assert load_checkpoint(old, device="cpu").step == 10_000
