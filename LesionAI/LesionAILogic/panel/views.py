"""What the panel shows, as plain records: a front end draws these and nothing else.

Rows of the candidate table are dicts keyed by the MRML table's column names
(:data:`LesionAILogic.candidates.PANEL_COLUMNS`); positions are RAS mm, as in the scene.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GRADE_CHOICES = ("not graded", "GG0 benign", "GG1", "GG2", "GG3", "GG4", "GG5")


@dataclass
class RoleLine:
    """Which volume has a role, and why (e.g. ``"t2w", "4: t2_tse_tra", "series description 't2_tse_tra'"``)."""

    role: str
    volume: str
    reason: str


@dataclass
class ReadingView:
    """Inputs, analysis, candidate table, heatmap controls, point and classify."""

    status: str = ""
    roles: list[RoleLine] = field(default_factory=list)
    analyzeEnabled: bool = False
    analyzeLabel: str = "Analyze"
    analyzeTooltip: str = ""
    analysisRunning: bool = False
    analysisProgress: int = 0  # percent
    caseScore: str = "–"
    modelName: str = "–"
    demoNotice: str = ""  # the model's notice when it was trained on synthetic data only ("" otherwise)
    rows: list[dict] = field(default_factory=list)  # highest probability first
    selectedCandidate: int | None = None
    heatmapVisible: bool = True
    heatmapOpacity: float = 0.6
    heatmapThreshold: float = 0.2
    pointResult: str = ""
    pointRunning: bool = False
    exportEnabled: bool = False  # a result is shown whose folder still exists (Export to DICOM)


@dataclass
class LesionLine:
    """One lesion of the annotation: its segment, name, grade choice (index into :data:`GRADE_CHOICES`)."""

    segmentId: str
    name: str
    gradeChoice: int
    proposedByModel: bool


@dataclass
class AnnotationView:
    """Annotation, grades and the deployment dataset."""

    createEnabled: bool = False
    saveEnabled: bool = False
    poolEnabled: bool = False
    nextCaseEnabled: bool = False
    nextCaseRunning: bool = False
    lesions: list[LesionLine] = field(default_factory=list)
    status: str = ""
    datasetSummary: str = ""


@dataclass
class ModelLine:
    """One model version offered in the model chooser."""

    label: str
    version: str
    active: bool


@dataclass
class ModelView:
    """Model versions and local fine-tuning."""

    models: list[ModelLine] = field(default_factory=list)
    unavailable: str = ""  # why no model can be listed ("" when the list is valid)
    finetuneEnabled: bool = False
    finetuneLabel: str = "Start fine-tuning"
    finetuneRunning: bool = False
    finetuneProgress: int = 0  # percent of the epochs
    finetuneStatus: str = ""
    validation: str = ""
    activateEnabled: bool = False


@dataclass
class GlandView:
    """The prostate gland of the shown T2 (TAPS model, a ``lesionai gland`` job)."""

    segmentEnabled: bool = False
    segmentLabel: str = "Segment gland"
    running: bool = False
    progress: int = 0  # percent
    status: str = ""
    volume: str = "–"
    psa: float = 0.0  # ng/ml; 0 when not given
    psaDensity: str = "–"  # PSA / gland volume, ng/ml per ml
    warnings: list[str] = field(default_factory=list)


@dataclass
class AbnormalityView:
    """The abnormality map (synthesis) layer and the viewer of one hidden box at the cursor."""

    modelPath: str = ""  # the synthesis model file: the chosen one, else the bundled one ("" when neither)
    modelAvailable: bool = False  # that file exists: "Analyze with abnormality map" can be used
    analyzeWithAbnormality: bool = False
    mapLoaded: bool = False  # the shown T2 has an abnormality map
    visible: bool = True
    opacity: float = 0.5
    status: str = ""
    viewEnabled: bool = False
    viewRunning: bool = False
    viewPng: str = ""  # the four-panel PNG of the last box viewed ("" when none)
    viewStatus: str = ""


@dataclass
class PanelView:
    """The whole panel."""

    reading: ReadingView
    annotation: AnnotationView
    models: ModelView
    gland: GlandView = field(default_factory=GlandView)
    abnormality: AbnormalityView = field(default_factory=AbnormalityView)
