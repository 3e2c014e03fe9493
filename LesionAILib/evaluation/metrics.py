"""Lesion- and case-level evaluation of csPCa detection maps, with PI-CAI's definitions.

The metric engine is ``picai_eval`` (the PI-CAI challenge's reference evaluation): candidate
matching is its ``evaluate_case`` and every number comes from its ``Metrics`` object, so our
point estimates are identical to ``picai_eval.evaluate``'s. This module checks in-memory
inputs, adds per-site breakdowns and bootstrap intervals, and renders the result as JSON and a
table. Files are paired and read by :mod:`LesionAILib.evaluation.case_files`, plots drawn by
:mod:`LesionAILib.evaluation.plots`.

Inputs (PI-CAI conventions):

* **detection map** — [Z, Y, X] float, values in [0, 1], on the same grid as its label: zero
  background and one constant value per lesion candidate (a connected blob, 26-connectivity),
  that value being the candidate's likelihood of csPCa. A probability (softmax) map is not a
  detection map; extract candidates first (e.g.
  ``report_guided_annotation.extract_lesion_candidates``).
* **label** — [Z, Y, X] csPCa annotation; any value > 0 is lesion (PI-CAI labels may carry the
  ISUP grade 2–5 per voxel). Each connected component (26-connectivity) is one lesion.

Definitions (as in picai_eval's README; ``min_overlap`` = 0.10 unless changed):

* **hit** — a candidate and a lesion match when their Intersection over Union is at least
  ``min_overlap``; within a case, candidates and lesions are paired one-to-one by Hungarian
  matching (most matches first, then most overlap). A matched candidate is a true positive at its
  value; an unmatched lesion is a false negative at confidence 0; a candidate that overlaps no
  lesion by ``min_overlap`` is a false positive. A second candidate on an already-matched lesion
  (overlap ≥ ``min_overlap``) is neither: picai_eval ignores it.
* **AP** — lesion-level average precision: area under the precision-recall curve of all
  candidates and lesions pooled over the cases (step integral, precision 0 at the false negatives'
  confidence 0).
* **AUROC** — case-level area under the ROC curve: a case is positive when its label holds at
  least one lesion, and its score is the maximum of its detection map (0 when empty).
* **score** — the PI-CAI ranking score, (AUROC + AP) / 2.
* **FROC sensitivity at x** — lesion-level sensitivity at the lowest candidate threshold whose
  false positives per case stay at or below x (picai_eval's ``Metrics.lesion_TPR_at_FPR``: the
  FROC step curve read at x, not interpolated between thresholds, since no threshold reaches an
  interpolated point). Reported at 0.25, 0.5, 1 and 2 false positives per case.
* **95% CI** — percentile bootstrap over cases: cases are drawn with replacement (``bootstrap``
  times, fixed seed, the same draws as picai_eval's ``Metrics.bootstrap_score_ci``) and AP and AUROC
  are recomputed by picai_eval's ``Metrics.calc_AP`` / ``Metrics.calc_auroc`` from the per-case
  matching results (matching is not rerun). Resamples in which a metric is undefined (no lesion
  for AP; no positive or no negative case for AUROC) are left out of that metric's interval.

AUROC is undefined (``None``) without both positive and negative cases, AP and FROC sensitivity
without lesions; picai_eval itself returns NaN, 0 or an exception there.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from LesionAILib.errors import LesionAIError
from LesionAILib.evaluation.inputs import CheckedCase, binary_label, check_same_shape, checked_detection_map
from LesionAILib.evaluation.sites import sites_of_cases

with contextlib.redirect_stdout(io.StringIO()):  # picai_eval prints a banner on import
    from picai_eval.eval import evaluate_case
    from picai_eval.metrics import Metrics

FP_PER_CASE = (0.25, 0.5, 1.0, 2.0)
CI_METRICS = ("auroc", "ap", "score")
Progress = Callable[[int, int], None]


def definitions(min_overlap: float = 0.10, bootstrap: int = 1000, seed: int = 0) -> dict[str, str]:
    """One sentence per reported quantity, for reports and JSON files."""
    return {
        "hit": (
            f"a candidate matches a lesion when their IoU is at least {min_overlap:g}; candidates and lesions of a "
            "case are paired one-to-one by Hungarian matching; unmatched lesions are false negatives (confidence 0), "
            "candidates overlapping no lesion enough are false positives, and a second candidate on a matched lesion "
            "is ignored (picai_eval)"
        ),
        "ap": "lesion-level average precision: area under the precision-recall curve of all candidates pooled over "
        "cases",
        "auroc": "case-level area under the ROC curve; a case is positive when its label has a lesion, and its score "
        "is the maximum of its detection map",
        "score": "PI-CAI ranking score, (AUROC + AP) / 2",
        "froc_sensitivity": "lesion-level sensitivity at the lowest threshold with at most x false positives per "
        "case (FROC step curve, picai_eval's lesion_TPR_at_FPR)",
        "ci95": f"95% percentile bootstrap interval over cases ({bootstrap} resamples, seed {seed}); AP and AUROC "
        "recomputed with picai_eval from the per-case matching results; resamples where a metric is undefined are "
        "left out",
        "num_lesions": "connected components (26-connectivity) of the labels (value > 0)",
        "num_candidates": "candidates counted by picai_eval: true positives + false positives",
    }


# --------------------------------------------------------------------------- results
@dataclass
class DetectionMetrics:
    """PI-CAI metrics of one group of cases (all cases, or one site's).

    ``auroc``, ``ap``, ``score`` and ``froc_sensitivity`` values are ``None`` where undefined
    (see the module docstring). ``ci95`` maps "auroc", "ap", "score" to (low, high) or ``None``.
    ``picai_metrics`` is picai_eval's own ``Metrics`` object for these cases (curves, per-case results).
    """

    auroc: float | None
    ap: float | None
    score: float | None
    froc_sensitivity: dict[float, float | None]
    num_cases: int
    num_positive_cases: int
    num_lesions: int
    num_candidates: int
    ci95: dict[str, tuple[float, float] | None]
    picai_metrics: Metrics = field(repr=False, compare=False)

    def to_dict(self) -> dict:
        return {
            "auroc": self.auroc,
            "ap": self.ap,
            "score": self.score,
            "froc_sensitivity": {f"{x:g}": value for x, value in self.froc_sensitivity.items()},
            "num_cases": self.num_cases,
            "num_positive_cases": self.num_positive_cases,
            "num_lesions": self.num_lesions,
            "num_candidates": self.num_candidates,
            "ci95": {name: None if ci is None else list(ci) for name, ci in self.ci95.items()},
        }


@dataclass
class EvaluationResult(DetectionMetrics):
    """Metrics over all cases, per site, and how they were obtained.

    ``to_dict()`` is what the JSON file holds: the overall metrics at top level, ``per_site``,
    ``definitions``, ``warnings``, the settings, and ``cases`` (per case: site, target, case score
    and picai_eval's lesion results ``[is_lesion, confidence, overlap]``).
    """

    per_site: dict[str, DetectionMetrics] = field(default_factory=dict)
    sites: dict[str, str] | None = None
    warnings: list[str] = field(default_factory=list)
    bootstrap: int = 0
    seed: int = 0
    min_overlap: float = 0.10
    sources: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        metrics = self.picai_metrics
        cases = {
            case_id: {
                "site": None if self.sites is None else self.sites[case_id],
                "target": int(metrics.case_target[case_id]),
                "confidence": float(metrics.case_pred[case_id]),
                "lesions": [[int(t), float(c), float(o)] for t, c, o in metrics.lesion_results[case_id]],
            }
            for case_id in metrics.subject_list
        }
        return {
            **super().to_dict(),
            "per_site": {site: group.to_dict() for site, group in self.per_site.items()},
            "definitions": definitions(self.min_overlap, self.bootstrap, self.seed),
            "warnings": list(self.warnings),
            "settings": {
                "min_overlap": self.min_overlap,
                "overlap": "IoU",
                "bootstrap_resamples": self.bootstrap,
                "seed": self.seed,
                "engine": f"picai_eval {metrics.version}",
                **self.sources,
            },
            "cases": cases,
        }

    def groups(self) -> list[tuple[str, DetectionMetrics]]:
        """("all", the overall metrics), then ("site <name>", that site's) for each site."""
        return [("all", self)] + [(f"site {site}", group) for site, group in self.per_site.items()]

    def table(self) -> str:
        """The metrics as a plain-text table: one row for all cases, one per site."""
        head = ["group", "cases", "pos", "lesions", "cand", "AUROC [95% CI]", "AP [95% CI]", "score [95% CI]"]
        head += [f"sens@{x:g}FP" for x in FP_PER_CASE]
        body = []
        for name, group in self.groups():
            cells = [name, group.num_cases, group.num_positive_cases, group.num_lesions, group.num_candidates]
            cells += [_with_ci(getattr(group, metric), group.ci95.get(metric)) for metric in CI_METRICS]
            cells += [_number(group.froc_sensitivity[x]) for x in FP_PER_CASE]
            body.append([str(cell) for cell in cells])
        widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
        lines = [f"PI-CAI evaluation (picai_eval; hit = IoU >= {self.min_overlap:g})"]
        lines += [f"{role}: {path}" for role, path in self.sources.items()]
        for row in [head, *body]:
            lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        lines += [f"warning: {text}" for text in self.warnings]
        return "\n".join(lines)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _with_ci(value: float | None, ci: tuple[float, float] | None) -> str:
    return _number(value) if ci is None else f"{_number(value)} [{ci[0]:.3f}, {ci[1]:.3f}]"


# --------------------------------------------------------------------------- computation
def _match_cases(
    cases: Iterable[CheckedCase],
    min_overlap: float,
    total: int,
    progress: Progress | None,
) -> Metrics:
    """picai_eval's candidate matching, one case at a time, collected into picai_eval's ``Metrics``.

    Equivalent to ``picai_eval.evaluate(..., num_parallel_calls=1)`` (which calls ``evaluate_case``
    per case and builds ``Metrics`` the same way), but loads one case at a time and names the
    file of a detection map picai_eval rejects.
    """
    lesion_results, case_pred = {}, {}
    for done, (case_id, detection_map, label, source) in enumerate(cases, start=1):
        try:
            lesion_results[case_id], case_pred[case_id], _, _ = evaluate_case(
                y_det=detection_map, y_true=label, min_overlap=min_overlap
            )
        except ValueError:
            raise LesionAIError(
                "not a detection map: picai_eval needs one constant value per separate candidate blob, and found "
                "more distinct values than blobs (touching candidates, or a probability map?)",
                source,
                "extract candidates first, e.g. report_guided_annotation.extract_lesion_candidates",
            ) from None
        if progress is not None:
            progress(done, total)
    if not lesion_results:
        raise LesionAIError("no cases to evaluate")
    return Metrics(lesion_results=lesion_results, case_pred=case_pred)


def _bootstrap(metrics: Metrics, resamples: int, seed: int) -> tuple[dict[str, tuple[float, float] | None], dict]:
    """Percentile 95% intervals of AUROC, AP and score, and how many resamples each one used."""
    rng = np.random.default_rng(seed)
    subjects = metrics.subject_list
    values: dict[str, list[float]] = {name: [] for name in CI_METRICS}
    for _ in range(resamples):
        sample = rng.choice(subjects, size=len(subjects), replace=True)
        positives = sum(metrics.case_target[case_id] for case_id in sample)
        auroc = metrics.calc_auroc(subject_list=sample) if 0 < positives < len(sample) else None
        ap = metrics.calc_AP(subject_list=sample) if positives > 0 else None
        for name, value in (("auroc", auroc), ("ap", ap)):
            if value is not None:
                values[name].append(value)
        if auroc is not None and ap is not None:
            values["score"].append((auroc + ap) / 2)
    intervals = {
        name: (float(np.percentile(found, 2.5)), float(np.percentile(found, 97.5))) if found else None
        for name, found in values.items()
    }
    return intervals, {name: len(found) for name, found in values.items()}


def _summarise(metrics: Metrics, resamples: int, seed: int) -> tuple[DetectionMetrics, list[str]]:
    """DetectionMetrics of one group, plus notes on what could not be computed."""
    num_cases = metrics.num_cases
    positives = int(sum(metrics.case_target.values()))
    num_lesions = int(metrics.num_lesions)
    candidates = sum(1 for _, confidence, _ in metrics.lesion_results_flat if confidence > 0)
    auroc = float(metrics.auroc) if 0 < positives < num_cases else None
    ap = float(metrics.AP) if num_lesions > 0 else None
    score = float(metrics.score) if auroc is not None and ap is not None else None
    froc = {x: float(metrics.lesion_TPR_at_FPR(x)) if num_lesions > 0 else None for x in FP_PER_CASE}
    notes = []
    if auroc is None:
        notes.append(f"AUROC and score undefined: {positives} of {num_cases} cases are positive")
    if ap is None:
        notes.append("AP and FROC sensitivity undefined: no lesions in the labels")
    ci95: dict[str, tuple[float, float] | None] = dict.fromkeys(CI_METRICS)
    defined = [name for name, value in (("auroc", auroc), ("ap", ap), ("score", score)) if value is not None]
    if resamples > 0 and defined:
        intervals, used = _bootstrap(metrics, resamples, seed)
        ci95.update({name: intervals[name] for name in defined})
        dropped = [f"{name} {resamples - used[name]}" for name in defined if used[name] < resamples]
        if dropped:
            notes.append(
                f"bootstrap resamples left out (metric undefined in them) of {resamples}: {', '.join(dropped)}"
            )
    group = DetectionMetrics(
        auroc=auroc,
        ap=ap,
        score=score,
        froc_sensitivity=froc,
        num_cases=num_cases,
        num_positive_cases=positives,
        num_lesions=num_lesions,
        num_candidates=candidates,
        ci95=ci95,
        picai_metrics=metrics,
    )
    return group, notes


def _site_metrics(metrics: Metrics, case_ids: Sequence[str]) -> Metrics:
    """picai_eval ``Metrics`` of a subset of cases, from the per-case results (no re-matching)."""
    return Metrics(
        lesion_results={case_id: metrics.lesion_results[case_id] for case_id in case_ids},
        case_target={case_id: metrics.case_target[case_id] for case_id in case_ids},
        case_pred={case_id: metrics.case_pred[case_id] for case_id in case_ids},
    )


# --------------------------------------------------------------------------- public entry points
def evaluate_cases(
    cases: Iterable[CheckedCase],
    case_ids: Sequence[str],
    sites: Mapping[str, str] | str | Path | None,
    bootstrap: int,
    *,
    seed: int,
    min_overlap: float,
    progress: Progress | None,
    warnings: Sequence[str] = (),
    sources: Mapping[str, str] | None = None,
) -> EvaluationResult:
    """Match checked cases with picai_eval and summarise them, overall and per site.

    ``cases`` may be a generator (read one case at a time) and must yield the cases of
    ``case_ids`` in that order. ``warnings`` are carried into the result ahead of the ones found
    here; ``sources`` (e.g. the prediction and label folders) go into its settings and table.
    The other arguments are those of :func:`evaluate_arrays`.
    """
    if bootstrap < 0:
        raise LesionAIError(f"bootstrap must be 0 (no intervals) or a number of resamples, got {bootstrap}")
    site_of = sites_of_cases(sites, case_ids)
    metrics = _match_cases(cases, min_overlap, len(case_ids), progress)
    overall, notes = _summarise(metrics, bootstrap, seed)
    warnings = [*warnings, *notes]
    per_site = {}
    if site_of is not None:
        for site in sorted(set(site_of.values())):
            members = [case_id for case_id in case_ids if site_of[case_id] == site]
            per_site[site], notes = _summarise(_site_metrics(metrics, members), bootstrap, seed)
            warnings += [f"site {site}: {note}" for note in notes]
    return EvaluationResult(
        **{name: getattr(overall, name) for name in DetectionMetrics.__dataclass_fields__},
        per_site=per_site,
        sites=site_of,
        warnings=warnings,
        bootstrap=bootstrap,
        seed=seed,
        min_overlap=min_overlap,
        sources=dict(sources or {}),
    )


def evaluate_arrays(
    detection_maps: Iterable[np.ndarray],
    labels: Iterable[np.ndarray],
    case_ids: Sequence[str],
    sites: Mapping[str, str] | str | Path | None = None,
    bootstrap: int = 1000,
    *,
    seed: int = 0,
    min_overlap: float = 0.10,
    progress: Progress | None = None,
) -> EvaluationResult:
    """Evaluate in-memory detection maps against labels with PI-CAI's metrics (module docstring).

    Args:
        detection_maps: per case a [Z, Y, X] array, values in [0, 1]: 0 background, one constant
            value per candidate blob (PI-CAI detection map). May be a generator (read lazily).
        labels: per case a [Z, Y, X] array on the same grid; lesion where > 0 (ISUP values welcome).
        case_ids: unique case names, in the same order.
        sites: optional case → site, or a site CSV (:func:`LesionAILib.evaluation.sites.read_sites_csv`);
            metrics are then also given per site.
        bootstrap: number of case resamples for the 95% intervals (0: none).
        seed: seed of the bootstrap draws.
        min_overlap: IoU a candidate needs with a lesion to hit it (PI-CAI: 0.10).
        progress: called as ``progress(done, total)`` after each case.

    Example::

        result = evaluate_arrays(maps, labels, ids, bootstrap=200)
        print(result.table())
    """
    case_ids = [str(case_id) for case_id in case_ids]
    duplicates = sorted({case_id for case_id in case_ids if case_ids.count(case_id) > 1})
    if duplicates:
        raise LesionAIError(f"case ids must be unique; repeated: {', '.join(duplicates[:5])}")

    def cases() -> Iterator[CheckedCase]:
        try:
            for case_id, detection_map, label in zip(case_ids, detection_maps, labels, strict=True):
                source = f"case {case_id}"
                detection_map, label = checked_detection_map(detection_map, source), binary_label(label, source)
                check_same_shape(detection_map, label, source)
                yield CheckedCase(case_id, detection_map, label, source)
        except ValueError as error:
            if "zip()" not in str(error):
                raise
            raise LesionAIError(f"detection maps, labels and case ids differ in number ({error})") from None

    return evaluate_cases(cases(), case_ids, sites, bootstrap, seed=seed, min_overlap=min_overlap, progress=progress)
