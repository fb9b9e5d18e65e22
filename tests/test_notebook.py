"""shared.notebook: the helpers every notebook's setup cell and demonstrations use."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import shared
from shared.notebook import expect_error, fast_mode, pick_device, seed_everything, subprocess_env
from tests import early

PACKAGE_PARENT = str(Path(shared.__file__).resolve().parent.parent)


def test_expect_error_prints_the_error_as_python_names_it_and_carries_on(capsys):
    with expect_error(KeyError):
        {}["Hello"]
    assert capsys.readouterr().err == "KeyError: 'Hello'\n"


def test_expect_error_accepts_any_of_several_kinds(capsys):
    with expect_error(TypeError, ValueError):
        int("seven")
    assert capsys.readouterr().err.startswith("ValueError: invalid literal")


def test_expect_error_fails_when_the_demonstration_does_not_raise():
    with pytest.raises(AssertionError, match="expected ValueError"):
        with expect_error(ValueError):
            pass


def test_expect_error_lets_other_errors_through():
    with pytest.raises(ZeroDivisionError):
        with expect_error(KeyError):
            1 / 0


def test_expect_error_needs_exception_classes():
    with pytest.raises(TypeError, match="exception classes"):
        with expect_error("KeyError"):
            pass


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("0", False), ("", False)])
def test_fast_mode_reads_the_variable(monkeypatch, value, expected):
    monkeypatch.setenv("COURSE_FAST", value)
    assert fast_mode() is expected


def test_fast_mode_rejects_a_typo(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "yes")
    with pytest.raises(ValueError, match="must be 0 or 1"):
        fast_mode()


def test_pick_device_honours_the_override(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")


def test_pick_device_refuses_cuda_that_is_not_there(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        pick_device("cuda")


def test_seed_everything_repeats_the_same_numbers():
    seed_everything(7)
    first = torch.rand(3)
    seed_everything(7)
    assert torch.equal(first, torch.rand(3))


def child_python(code, cwd, env):
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_a_child_in_an_empty_folder_imports_the_same_shared(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTHONPATH", raising=False)  # the child must not depend on what the caller had
    result = child_python("import shared; print(shared.__file__)", tmp_path, subprocess_env())
    assert result.returncode == 0, result.stderr[-2000:]
    assert Path(result.stdout.strip()).resolve() == Path(shared.__file__).resolve()


def test_existing_pythonpath_is_kept_after_the_package_and_overrides_apply(monkeypatch):
    elsewhere = os.path.join(os.sep, "some", "other", "folder")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([elsewhere, PACKAGE_PARENT]))
    env = subprocess_env(OMP_NUM_THREADS="1")
    assert env["PYTHONPATH"].split(os.pathsep) == [PACKAGE_PARENT, elsewhere]  # first, and only once
    assert env["OMP_NUM_THREADS"] == "1"
    assert os.environ["PYTHONPATH"] == os.pathsep.join([elsewhere, PACKAGE_PARENT])  # the caller's is untouched


SCRIPTS = ["shared.benchmark", "shared.ddp_train"]


def run_scripts(prepared):
    return {script: early.run([sys.executable, "-m", script, "--help"], cwd=folder, env=env, timeout=120)
            for script, (folder, env) in prepared.items()}


# The scripts' new Pythons start with the test loop and run on the second core while the tests before these run
# (tests/early.py): the same command, each from an empty folder of its own, with the environment made as before.
@early.early(run_scripts)
def scripts_run_from_empty_folders():
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.delenv("PYTHONPATH", raising=False)
        return {script: (early.scratch(script), subprocess_env()) for script in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_course_scripts_run_as_modules_from_any_folder(script, scripts_run_from_empty_folders):
    result = scripts_run_from_empty_folders[script]
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"-m {script}" in result.stdout  # the docstring's usage lines, as argparse prints them


def test_an_installed_package_in_site_packages_leaves_pythonpath_alone(monkeypatch):
    # A child finds site-packages by itself; on PYTHONPATH it would come before the standard library.
    monkeypatch.setattr("site.getsitepackages", lambda: [PACKAGE_PARENT])
    monkeypatch.delenv("PYTHONPATH", raising=False)
    assert "PYTHONPATH" not in subprocess_env()
