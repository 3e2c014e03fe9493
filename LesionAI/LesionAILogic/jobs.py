"""The panel's long jobs: the real ``lesionai`` commands in separate processes (torch never loads in Slicer).

Each job runs ``<python> -m LesionAILib.cli <command> --json-events --cancel-file <job>/CANCEL ...``
(:func:`LesionAILib.jobs.runner.lesionai_job`) in its own folder under the work folder, with the
input volumes written there first when it needs them. The caller polls the returned
:class:`~LesionAILib.jobs.runner.JobRunner` (the panel from a ``QTimer``), reads ``job.state``
and, once finished, loads what the command wrote (e.g. :meth:`SceneResults.loadAnalysisResult`
on ``job.work_folder / "result"``) on the main thread.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import SimpleITK as sitk

from LesionAILib.jobs.runner import JobRunner, lesionai_job
from LesionAILib.studies.roles import ROLES

ANALYSIS_FOLDER = "result"  # the `lesionai analyze --out` folder inside an analysis job's folder


def python_executable() -> str:
    """The Python to run jobs with: ``PythonSlicer`` inside the Slicer application, else this interpreter."""
    if "slicer" in sys.modules and hasattr(sys.modules["slicer"], "app"):
        found = shutil.which("PythonSlicer")
        if found:
            return found
    return sys.executable


def _job_environment() -> dict[str, str]:
    """PYTHONPATH for job processes: the folder holding LesionAILib (in Slicer: the module folder)."""
    import LesionAILib

    return {"PYTHONPATH": str(Path(LesionAILib.__file__).resolve().parents[1])}


class SceneJobs:
    """Starts ``lesionai`` jobs on the scene's volumes; each gets a folder under ``workFolder`` (default: a new
    temporary folder)."""

    def __init__(self, inputs, models, workFolder: str | Path | None = None):
        self._inputs = inputs
        self._models = models
        self._workFolder = Path(workFolder) if workFolder else None

    def start(
        self,
        command: str,
        arguments: Sequence[str],
        python: str | None = None,
        case=None,
        epochs: Mapping[int, int] | None = None,
        context: object = None,
    ) -> JobRunner:
        """Start ``lesionai <command> <arguments>`` in a new job folder (the command's working directory, so
        relative paths land there); ``case``'s three images are written there first and given as
        ``--t2w/--adc/--hbv``."""
        if self._workFolder is None:
            self._workFolder = Path(tempfile.mkdtemp(prefix="LesionAI-"))
        self._workFolder.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f"{command}-", dir=self._workFolder))
        if case is not None:
            files = {role: folder / "inputs" / f"{role}.nrrd" for role in ROLES}
            files["t2w"].parent.mkdir()
            for role, path in files.items():
                sitk.WriteImage(case.image(role), str(path), False)
            arguments = [*(part for role in ROLES for part in (f"--{role}", str(files[role]))), *arguments]
        python = python or python_executable()
        return lesionai_job(command, arguments, folder, python, _job_environment(), epochs, context).start()

    def startAnalysis(
        self,
        t2,
        adc,
        hbv,
        model: str | Path | None = None,
        device: str = "auto",
        python: str | None = None,
        abnormalityModel: str | Path | None = None,
    ) -> JobRunner:
        """``lesionai analyze`` of the three volumes in a separate process (returns at once).

        The inputs are checked and written to the job's folder first (errors raise here). Poll the
        returned job; when it has finished, call :meth:`loadAnalysisResult` with
        ``job.work_folder / "result"`` on the main thread. With ``abnormalityModel`` (a synthesis model
        file) the job also writes the abnormality map and its candidates' four-panel PNGs
        (``--abnormality --abnormality-panels``; :meth:`loadAbnormalityMap` loads the map).
        """
        case = self._inputs.caseFromNodes(t2, adc, hbv)
        arguments = ["--out", ANALYSIS_FOLDER, "--case-id", case.case_id, "--no-figures"]
        arguments += ["--model", str(self._models.modelPath(model)), "--device", device]
        if abnormalityModel is not None:
            arguments += ["--abnormality", "--abnormality-model", str(abnormalityModel), "--abnormality-panels"]
        return self.start("analyze", arguments, python, case=case)

    def startNextCaseSearch(
        self,
        poolFolder: str | Path,
        model: str | Path | None = None,
        device: str = "auto",
        samples: int = 8,
        python: str | None = None,
    ) -> JobRunner:
        """``lesionai order --by uncertainty --unannotated`` of a deployment dataset in a separate process;
        the job's result is ``{"by", "order": [{"case", "score", ...}], "first": case id or None}``."""
        arguments = [str(poolFolder), "--by", "uncertainty", "--unannotated", "--samples", str(int(samples))]
        arguments += ["--model", str(self._models.modelPath(model)), "--device", device]
        return self.start("order", arguments, python)

    def startFinetuning(
        self,
        datasetFolder: str | Path,
        epochs: int = 8,
        classifierEpochs: int = 4,
        device: str = "auto",
        force: bool = False,
        base: str | None = None,
        runFolder: str | Path | None = None,
        python: str | None = None,
    ) -> JobRunner:
        """Start ``lesionai finetune`` on a deployment dataset in a separate process (returns at once).

        The job validates the base and the fine-tuned model on held-out cases and stores a new
        version, activated only if it validates at least as well (or ``force``). Follow it with
        ``job.poll()``: ``job.state`` has the stage, epoch (of ``epochs``/``classifierEpochs``),
        loss and validation score; ``job.state.result`` the final ``{"version", "activated",
        "validation_before", "validation_after", ...}``. ``job.cancel()`` stops it, leaving the
        store unchanged; rerunning with the same ``runFolder`` resumes.
        """
        arguments = ["--dataset", str(datasetFolder), "--store", str(self._models.modelStore.root), "--device", device]
        arguments += ["--epochs", str(int(epochs)), "--classifier-epochs", str(int(classifierEpochs))]
        if runFolder:
            arguments += ["--run-dir", str(runFolder)]
        if base:
            arguments += ["--base", base]
        if force:
            arguments.append("--force")
        return self.start("finetune", arguments, python, epochs={1: int(epochs), 2: int(classifierEpochs)})

    def removeJobFolder(self, job: JobRunner) -> None:
        """Delete a finished job's folder (inputs, outputs, logs); never one a live process of the job still uses."""
        if job.state.finished and not job.alive:
            self.removeFolder(job.work_folder)

    def removeFolder(self, folder: str | Path) -> None:
        """Delete a job folder of this work folder (nothing outside it) whose job has ended."""
        folder = Path(folder)
        if self._workFolder and folder.parent.resolve() == self._workFolder.resolve():
            shutil.rmtree(folder, ignore_errors=True)
