"""Which site each evaluated case comes from: site lists as CSV files or PI-CAI marksheets."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

from LesionAILib.errors import LesionAIError


def read_sites_csv(path: str | Path) -> dict[str, str]:
    """Case → site from a CSV with columns ``case_id,site``, or a PI-CAI marksheet.

    A PI-CAI marksheet (columns ``patient_id``, ``study_id``, ``center``) gives the case id
    ``<patient_id>_<study_id>`` and the site ``center``.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise LesionAIError(f"cannot read the site list ({error.strerror})", path) from None
    columns = {name.strip().lower(): name for name in (rows[0].keys() if rows else []) if name}
    if {"case_id", "site"} <= columns.keys():
        pairs = [(row[columns["case_id"]], row[columns["site"]]) for row in rows]
    elif {"patient_id", "study_id", "center"} <= columns.keys():
        pairs = [(f"{row[columns['patient_id']]}_{row[columns['study_id']]}", row[columns["center"]]) for row in rows]
    else:
        raise LesionAIError(
            f"site list needs columns case_id,site (or a PI-CAI marksheet's patient_id,study_id,center); "
            f"found {sorted(columns) or 'none'}",
            path,
        )
    sites: dict[str, str] = {}
    for line, (case_id, site) in enumerate(pairs, start=2):
        case_id, site = (case_id or "").strip(), (site or "").strip()
        if not case_id or not site:
            raise LesionAIError(f"line {line}: empty case id or site", path)
        if sites.get(case_id, site) != site:
            raise LesionAIError(f"line {line}: case {case_id} is at both {sites[case_id]} and {site}", path)
        sites[case_id] = site
    return sites


def sites_of_cases(sites: Mapping[str, str] | str | Path | None, case_ids: Sequence[str]) -> dict[str, str] | None:
    """Case → site for exactly ``case_ids`` (``None`` without sites); a case without a site is refused.

    ``sites`` is a mapping or a CSV file read by :func:`read_sites_csv`.
    """
    if sites is None:
        return None
    source = sites if isinstance(sites, (str, Path)) else None
    mapping = read_sites_csv(sites) if source is not None else {str(k): str(v) for k, v in sites.items()}
    missing = [case_id for case_id in case_ids if case_id not in mapping]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise LesionAIError(
            f"{len(missing)} case(s) have no site: {shown}", source, "add them to the site list, or drop the sites"
        )
    return {case_id: mapping[case_id] for case_id in case_ids}
