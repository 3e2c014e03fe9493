"""The README's commands and Python example, run as written (placeholders filled in, sizes named below).

Every ``lesionai`` line of a README code block must be in :data:`RUN` (executed here, in a scratch
working folder with ``../shared`` pointing at the shared data), or in :data:`COVERED_ELSEWHERE`
with the test that runs it on a budget CI can afford. A new README command that is in neither
fails :func:`test_every_readme_command_is_run_or_covered`; each one must at least parse.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import ROOT, SHARED_DATA, require

from LesionAILib.cli.main import build_parser
from LesionAILib.prostatex.classifier import CLASSIFIER_NAME

README = ROOT / "README.md"
LESIONAI = Path(sys.executable).with_name("lesionai")

# Placeholders of the README's lines -> what this test uses (relative to its scratch folder).
PLACEHOLDERS = {
    "STUDY": "../shared/data/prostatex/ProstateX-0000",
    "DIR": "out/dir",
    "C": "Resources/Configs/demo-phantom.json",
    "modelA.safetensors": "modelA.safetensors",
}
# The only changes to a command as written: cohort sizes (80 cases would take many minutes here).
SIZE_CHANGES = {"--cases 80": "--cases 3"}

# README lines executed here, in this order (after placeholders and SIZE_CHANGES).
RUN = [
    "lesionai inspect ../shared/data/prostatex/bad-input/ProstateX-0000-missing-slice",
    "lesionai classify ../shared/data/prostatex/ProstateX-0000 --point 25.7457,31.8707,-38.511 --json",
    "lesionai classify STUDY --point=-25.7,-31.9,-38.5 --ras --zone PZ --out DIR",
    "lesionai analyze STUDY --out DIR --classifier",
    "lesionai phantom --out cohorts/A --cases 80 --site A --seed 1",
    "lesionai models",
]
# README lines whose full run costs minutes of training: where they run, at a small size.
COVERED_ELSEWHERE = {
    "lesionai serve --studies /data/mpmri": "Testing/test_browser_reading.py (the page in headless Chromium)",
    "lesionai gland STUDY --out DIR --psa 6.4": "Testing/test_gland.py (lesionai gland on ProstateX-0000)",
    "lesionai analyze STUDY --out DIR --gland --gland-margin 5": "Testing/test_gland.py (analyze --gland)",
    "lesionai analyze ProstateX-0000 --out result --dicom-out result-dicom": (
        "Testing/test_dicom_export.py (analyze --dicom-out with the bundled model)"
    ),
    "lesionai export-dicom result --study ProstateX-0000 --out result-dicom": (
        "Testing/test_dicom_export.py (export-dicom of a result folder)"
    ),
    "lesionai send result-dicom --to PACS@pacs.hospital.example:104 --calling-ae LESIONAI": (
        "Testing/test_dicom_export.py (send to a loopback Storage SCP)"
    ),
    "lesionai train --config Resources/Configs/demo-phantom.json --train cohorts/A --run-dir runs/mine": (
        "Testing/test_training.py (train command with a tiny config)"
    ),
    "lesionai order --by similarity --reference cohorts/A cohorts/B --json": "Testing/test_multisite.py",
    "lesionai train --config C --train cohorts/B --run-dir runs/AB --multisite --pretrained modelA.safetensors "
    "--reference cohorts/A": "Testing/test_multisite.py",
    "lesionai order --by uncertainty site-dataset --json": "Testing/test_deployment.py",
    "lesionai finetune --dataset site-dataset": "Testing/test_deployment.py (fine-tuning with a 1-epoch budget)",
    "lesionai models rollback": "Testing/test_deployment.py (model store rollback)",
    "lesionai train-synthesis --train cohorts/A --out synthesis.safetensors --run-dir runs/synthesis": (
        "Testing/test_synthesis.py (train-synthesis on phantoms, a few steps)"
    ),
    "lesionai analyze STUDY --out DIR --abnormality --abnormality-model synthesis.safetensors": (
        "Testing/test_synthesis.py (analyze --abnormality on the exact T2 grid)"
    ),
    "lesionai synthesis-view STUDY --model Resources/Models/lesionai-synthesis-prostatex-2d.safetensors "
    "--at-lps 25.7457 31.8707 -38.511 --out view.png": (
        "Testing/test_synthesis_view.py (the 2D model at the ProstateX-0000 finding; phantoms with a tiny 3D model)"
    ),
    "lesionai analyze STUDY --out DIR --abnormality --abnormality-model synthesis.safetensors "
    "--abnormality-panels --no-figures": "Testing/test_synthesis_view.py (analyze --abnormality-panels)",
    "lesionai train-synthesis-prostatex --findings ../shared/data/prostatex-findings --out my-map.safetensors": (
        "Testing/test_synthesis_prostatex_map.py (train command, 3 steps)"
    ),
    "lesionai analyze STUDY --out DIR --gland --abnormality --abnormality-model "
    "Resources/Models/lesionai-synthesis-prostatex-2d.safetensors": (
        "Testing/test_synthesis_prostatex_map.py (analyze --abnormality with the bundled 2D model)"
    ),
}


def _code_blocks(text: str, language: str | None = None) -> list[str]:
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)
    return [body for lang, body in blocks if language is None or lang == language]


def readme_commands() -> list[str]:
    """Every ``lesionai ...`` command line of the README's code blocks, comments and prompts removed."""
    commands = []
    for block in _code_blocks(README.read_text(encoding="utf-8")):
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("lesionai "):
                commands.append(re.sub(r"\s+#.*$", "", line).strip())
    return commands


def _filled(command: str) -> list[str]:
    for written, used in SIZE_CHANGES.items():
        command = command.replace(written, used)
    words = shlex.split(command)
    return [PLACEHOLDERS.get(word, word) if "=" not in word else word for word in words]


def test_every_readme_command_is_run_or_covered():
    commands = readme_commands()
    assert len(commands) >= 10
    unaccounted = [c for c in commands if c not in RUN and c not in COVERED_ELSEWHERE]
    assert not unaccounted, f"README commands neither run nor covered by a test: {unaccounted}"
    assert set(RUN) | set(COVERED_ELSEWHERE) == set(commands), "the lists name commands the README no longer has"


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_parses(command):
    args = build_parser().parse_args(_filled(command)[1:])
    assert callable(args.handler)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A scratch folder laid out like a checkout: ``../shared`` and ``Resources`` where the README expects them."""
    require(SHARED_DATA)
    top = tmp_path_factory.mktemp("readme")
    (top / "shared").symlink_to(SHARED_DATA.parent)
    work = top / "work"
    work.mkdir()
    (work / "Resources").symlink_to(ROOT / "Resources")
    return work


@pytest.fixture(scope="module")
def runs(workdir) -> dict[str, subprocess.CompletedProcess]:
    environment = {**os.environ, "LESIONAI_HOME": str(workdir / "home"), "OMP_NUM_THREADS": "2"}
    done = {}
    for command in RUN:
        done[command] = subprocess.run(
            [str(LESIONAI), *_filled(command)[1:]],
            cwd=workdir,
            env=environment,
            capture_output=True,
            text=True,
            timeout=600,
        )
    return done


def test_readme_error_example_prints_what_the_readme_shows(runs):
    completed = runs[RUN[0]]
    shown = next(line for line in README.read_text().splitlines() if line.startswith("lesionai: error: …/"))
    assert completed.returncode == 2 and completed.stderr.count("\n") == 1
    assert completed.stderr.strip().endswith(shown.removeprefix("lesionai: error: …"))


def test_readme_classify_lines(runs, workdir):
    lps = runs[RUN[1]]
    assert lps.returncode == 0, lps.stderr
    point = json.loads(lps.stdout)
    assert 0.0 <= point["probability"] <= 1.0 and point["model"] == CLASSIFIER_NAME
    ras = runs[RUN[2]]
    assert ras.returncode == 0, ras.stderr
    assert any((workdir / "out/dir").glob("*.png"))


def test_readme_analyze_with_the_classifier(runs, workdir):
    completed = runs[RUN[3]]
    assert completed.returncode == 0, completed.stderr
    result = json.loads((workdir / "out/dir/result.json").read_text())
    assert result["classifier"]["name"] and result["model"]["demo"] is True
    candidates = json.loads((workdir / "out/dir/candidates.json").read_text())
    assert len(candidates) >= 1
    assert all("detector_probability" in c or "outside" in c["score_model"] for c in candidates)
    t2 = sitk.ReadImage(str(workdir / "out/dir/heatmap.nrrd"))
    assert t2.GetSize() == (384, 384, 19)


def test_readme_phantom_and_models_lines(runs, workdir):
    assert runs[RUN[4]].returncode == 0, runs[RUN[4]].stderr
    assert len(list((workdir / "cohorts/A/images").iterdir())) == 3
    models = runs[RUN[5]]
    assert models.returncode == 0, models.stderr
    active = [line for line in models.stdout.splitlines() if line.startswith("* ")]
    assert len(active) == 1 and active[0].split()[1] == "demo" and "bundled demo model" in active[0]


def test_readme_python_example_runs_as_written(workdir):
    (block,) = [b for b in _code_blocks(README.read_text(encoding="utf-8"), "python") if "open_case(" in b]
    completed = subprocess.run(
        [sys.executable, "-c", block], cwd=workdir, capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.strip().splitlines()
    case_score = float(lines[0].split()[0])
    assert 0.0 <= case_score <= 1.0 and len(lines) >= 2  # the score line and at least one candidate line
    first = lines[1].split()
    assert int(first[0]) == 1 and np.isclose(float(first[1]), case_score, atol=1e-6)
