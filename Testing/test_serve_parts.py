"""The parts of ``lesionai serve`` that need no browser: study discovery, the studies-root confinement, the
per-study analysis lock across processes, the access log, and the command's one-line refusals."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest
import SimpleITK as sitk
from conftest import ROOT

sys.path.insert(0, str(ROOT / "LesionAI"))

from LesionAIWeb.access_log import MAX_LINE, AccessLog, read_access_log  # noqa: E402
from LesionAIWeb.confinement import StudiesRoot, StudyAccessError  # noqa: E402
from LesionAIWeb.study_locks import StudyLock  # noqa: E402

from LesionAILib.cli.main import main  # noqa: E402
from LesionAILib.studies.discovery import find_studies  # noqa: E402


def _picai_case(folder, case_id: str, roles=("t2w", "adc", "hbv")) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for role in roles:
        sitk.WriteImage(sitk.Image(4, 4, 3, sitk.sitkFloat32), str(folder / f"{case_id}_{role}.mha"))


@pytest.mark.realdata
def test_discovery_lists_each_copy_of_a_study_apart_with_its_roles_or_its_problem(prostatex_dir, tmp_path):
    shutil.copytree(prostatex_dir / "ProstateX-0000", tmp_path / "a" / "ProstateX-0000")
    shutil.copytree(prostatex_dir / "bad-input", tmp_path / "bad-input")  # same UIDs as ProstateX-0000
    _picai_case(tmp_path / "picai" / "10000", "10000_1000000")
    _picai_case(tmp_path / "picai" / "10000", "10000_1000001", roles=("t2w", "adc"))
    found = {study.key: study for study in find_studies(tmp_path)}
    assert sorted(found) == [
        "a/ProstateX-0000/07-07-2011",
        "bad-input/ProstateX-0000-missing-slice/07-07-2011",
        "picai/10000#10000_1000000",
        "picai/10000#10000_1000001",
    ]
    good = found["a/ProstateX-0000/07-07-2011"]
    assert good.kind == "dicom" and good.problem == "" and good.name.startswith("ProstateX-0000")
    assert good.roles == {"t2w": "series 4 (t2_tse_tra)", "adc": "series 7 (ep2d_diff_tra_DYNDIST_ADC)",
                          "hbv": "series 8 (ep2d_diff_tra_DYNDISTCALC_BVAL)"}
    broken = found["bad-input/ProstateX-0000-missing-slice/07-07-2011"]
    assert broken.roles == {} and "missing 1 slice" in broken.problem and "\n" not in broken.problem
    picai = found["picai/10000#10000_1000000"]
    assert picai.kind == "picai" and picai.files["adc"] == "picai/10000/10000_1000000_adc.mha"
    assert "no hbv file" in found["picai/10000#10000_1000001"].problem


def test_only_folders_inside_the_studies_root_resolve(tmp_path):
    root = tmp_path / "studies"
    (root / "study" / "series").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "linked").symlink_to(tmp_path / "outside", target_is_directory=True)
    (root / "inner-link").symlink_to(root / "study", target_is_directory=True)
    (root / "leaky").mkdir()
    (root / "leaky" / "file.dcm").symlink_to(tmp_path / "outside")
    studies = StudiesRoot(root)
    assert studies.resolve("study") == (root / "study").resolve()
    assert studies.resolve("study/series") == (root / "study" / "series").resolve()
    assert studies.resolve("inner-link") == (root / "study").resolve()  # a link that stays inside is fine
    refused = {
        "": "no study given",
        "../outside": "leaves the studies folder",
        "study/../../outside": "leaves the studies folder",
        "study\\..\\..\\outside": "leaves the studies folder",
        str(root / "study"): "absolute path",
        "/etc": "absolute path",
        "C:\\Windows": "absolute path",
        "linked": "links outside the studies folder",
        "leaky": "holds a link to outside the studies folder (file.dcm)",
        "missing": "does not exist",
        "a\0b": "not a valid study name",
    }
    for name, reason in refused.items():
        with pytest.raises(StudyAccessError) as error:
            studies.resolve(name)
        message = str(error.value)
        assert reason in message and str(tmp_path) not in message.replace(name, ""), name  # only what was typed
    assert studies.display(f"{root.resolve()}/x: broken") == "<studies>/x: broken"


def test_an_analysis_lock_held_by_another_process_blocks_until_that_process_ends(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            sys.path.insert(0, {str(ROOT / 'LesionAI')!r})
            from LesionAIWeb.study_locks import StudyLock
            lock = StudyLock({str(tmp_path)!r}, "/data/ProstateX-0000")
            assert lock.try_acquire()
            print("held", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        mine = StudyLock(tmp_path, "/data/ProstateX-0000")
        assert not mine.try_acquire() and not mine.held
        other_study = StudyLock(tmp_path, "/data/ProstateX-0001")
        assert other_study.try_acquire()
        other_study.release()
    finally:
        holder.kill()
        holder.wait()
    assert mine.try_acquire() and mine.held  # the kernel dropped the dead process's lock
    mine.release()


def test_access_log_lines_are_json_and_stay_below_an_atomic_append(tmp_path):
    log = AccessLog(tmp_path / "access.jsonl", session="s1", remote="127.0.0.1")
    log.write("study_opened", study="ProstateX-0000/07-07-2011")
    log.with_fields(user="reader").write("study_refused", study="x" * 10_000)
    first, second = read_access_log(tmp_path / "access.jsonl")
    assert first["event"] == "study_opened" and first["session"] == "s1" and first["study"].startswith("ProstateX")
    assert second["user"] == "reader" and second["truncated"] is True and "study" not in second
    assert all(len(line) < MAX_LINE for line in (tmp_path / "access.jsonl").read_text().splitlines())
    assert oct((tmp_path / "access.jsonl").stat().st_mode & 0o777) == "0o600"


def test_serve_refuses_bad_settings_in_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "studies").mkdir()
    cases = {
        ("--studies", str(tmp_path / "none")): "is not a folder",
        ("--studies", str(tmp_path / "studies"), "--work", str(tmp_path / "studies" / "work")):
            "is inside the studies folder",
        ("--studies", str(tmp_path / "studies"), "--work", str(tmp_path / "w"), "--token", "short"):
            "--token is shorter than 16 characters",
        ("--studies", str(tmp_path / "studies"), "--max-sessions", "0"): "--max-sessions",
    }
    for arguments, message in cases.items():
        assert main(["serve", *arguments]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("lesionai: error: ") and message in error and "\n" not in error, error
    import LesionAILib.cli.serve as serve_command

    real = serve_command.importlib.util.find_spec
    monkeypatch.setattr(serve_command.importlib.util, "find_spec",
                        lambda name, *a: None if name == "trame_slicer" else real(name, *a))
    assert main(["serve", "--studies", str(tmp_path / "studies")]) == 2
    error = capsys.readouterr().err.strip()
    assert error == ("lesionai: error: lesionai serve needs trame-slicer (install the browser extra in a source "
                     "checkout: pip install -e '.[mrml]')")
