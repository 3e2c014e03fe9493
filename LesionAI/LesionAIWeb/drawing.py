"""What the page shows, as trame state: the panel controller's :class:`ReadingView` turned into plain JSON values.

The page draws these names and nothing else (:mod:`LesionAIWeb.page` binds them); the browser
never computes a value itself. Numbers in the candidate table are formatted as in the Qt panel
(:data:`LesionAILogic.candidates.PANEL_COLUMNS`: places per column); positions are RAS mm.
"""

from __future__ import annotations

import math

from LesionAILogic.candidates import PANEL_COLUMNS

# the candidate table's columns in the page: (key in a row, header)
TABLE_COLUMNS = (
    ("id", "#"),
    ("probability", "probability"),
    ("grade group", "grade group"),
    ("volume ml", "volume (ml)"),
    ("R mm", "R (mm)"),
    ("A mm", "A (mm)"),
    ("S mm", "S (mm)"),
    ("model", "model"),
)
_DECIMALS = dict(PANEL_COLUMNS)
ROLE_LABELS = {"t2w": "T2", "adc": "ADC", "hbv": "high-b"}


def _cell(column: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    decimals = _DECIMALS.get(column)
    if decimals is not None and isinstance(value, (int, float)):
        return f"{float(value):.{decimals}f}"
    return str(value)


def table_rows(rows: list[dict]) -> list[dict]:
    """The controller's rows as the page's table: ``{"id": int, "cells": {column: text}}``, order kept."""
    return [
        {"id": int(row["id"]), "cells": {key: _cell(key, row.get(key)) for key, _ in TABLE_COLUMNS}} for row in rows
    ]


def reading_state(view, queued: bool, finished: bool) -> dict:
    """Trame state of the reading section from a :class:`~LesionAILogic.panel.views.ReadingView`.

    ``queued``: the analysis waits for another session's analysis of the same study (the button then
    offers to stop waiting); ``finished``: the last analysis ended with its result loaded (the bar shows
    100 % rather than the job's last progress step).
    """
    running = view.analysisRunning
    label = "Stop waiting" if queued else view.analyzeLabel
    return {
        "status": view.status,
        "roles": [
            {"role": ROLE_LABELS.get(line.role, line.role), "volume": line.volume, "reason": line.reason}
            for line in view.roles
        ],
        "analyze_label": label,
        "analyze_enabled": bool(view.analyzeEnabled or queued),
        "analyze_tooltip": view.analyzeTooltip,
        "analysis_running": bool(running),
        "analysis_queued": bool(queued),
        "analysis_progress": 100 if finished and not running else int(view.analysisProgress),
        "case_score": view.caseScore,
        "model_name": view.modelName,
        "demo_notice": view.demoNotice,
        "rows": table_rows(view.rows),
        "selected_id": view.selectedCandidate,
        "heatmap_visible": bool(view.heatmapVisible),
        "heatmap_opacity": float(view.heatmapOpacity),
        "heatmap_threshold": float(view.heatmapThreshold),
        "point_result": view.pointResult,
        "point_running": bool(view.pointRunning),
    }


def study_list(studies: list[dict]) -> list[dict]:
    """The study list of the page from :meth:`LesionAILib.studies.discovery.FoundStudy.to_dict` records."""
    shown = []
    for study in studies:
        roles = "; ".join(f"{ROLE_LABELS[role]}: {label}" for role, label in study["roles"].items())
        shown.append(
            {
                "key": study["key"],
                "name": study["name"],
                "path": study["path"],
                "kind": "PI-CAI" if study["kind"] == "picai" else "DICOM",
                "roles": roles,
                "problem": study["problem"],
            }
        )
    return shown
