import subprocess
import sys
import tarfile

from mmsent.sagemaker.package import ENTRY_POINT, build_sourcedir, image_requirements


def test_sourcedir_holds_the_entry_point_requirements_and_package(tmp_path):
    archive = build_sourcedir(tmp_path / "sourcedir.tar.gz")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        requirements = tar.extractfile("requirements.txt").read().decode()
    assert ENTRY_POINT in names and "mmsent/cli.py" in names and "mmsent/training/loop.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    # The training image's own torch, torchvision and torchaudio, pinned: pip leaves them as they are.
    assert requirements.splitlines()[:3] == ["torch==2.10.0", "torchvision==0.25.0", "torchaudio==2.10.0"]
    assert "transformers==" in requirements and "av==" in requirements
    assert requirements.splitlines() == image_requirements()


def test_sourcedir_is_reproducible(tmp_path):
    first = build_sourcedir(tmp_path / "a.tar.gz").read_bytes()
    assert build_sourcedir(tmp_path / "b.tar.gz").read_bytes() == first


def test_the_unpacked_entry_point_runs_mmsent_train(tmp_path):
    with tarfile.open(build_sourcedir(tmp_path / "s.tar.gz")) as tar:
        tar.extractall(tmp_path / "code", filter="data")
    # As the toolkit runs it: from /opt/ml/code, importing the packaged sources, not an installed mmsent.
    result = subprocess.run([sys.executable, "-I", ENTRY_POINT, "--help"], cwd=tmp_path / "code",
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "usage: mmsent train" in result.stdout and "--learning-rate" in result.stdout
