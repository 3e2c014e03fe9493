"""The reading page's layout (trame, Vuetify 3): widgets bound to the state names of :mod:`LesionAIWeb.drawing`.

Every widget shows a state value and every click calls one method of the session's
:class:`~LesionAIWeb.session.WebReading`; nothing is decided here. Elements a person (or a
test) looks for carry ``data-testid`` attributes. The three slice views are trame-slicer's remote
views (the server renders, the page shows images and sends mouse events back), placed by its
layout manager in the T2 | ADC | high-b order of :data:`LesionAILogic.display.READING_VIEWS`.
"""

from __future__ import annotations

from trame.ui.vuetify3 import SinglePageLayout
from trame.widgets import client, html
from trame.widgets import vuetify3 as v3

from .drawing import TABLE_COLUMNS

TITLE = "LesionAI reading (research software, not for clinical use)"
VIEW_TITLES = ("T2 + combined heatmap", "ADC + its heatmap", "high-b + its heatmap")
VIEWS_HEIGHT_PX = 420
SHORTCUT_TRIGGER = "lesionai_shortcut"
# an Alt+key press, named as the controller's shortcuts are (Qt's notation: "Alt+Down", "Alt+H"); other keys
# (typing a folder name) never reach the server
KEYDOWN = (
    f"@keydown=\"$event.altKey && trigger('{SHORTCUT_TRIGGER}', ['Alt+' + ($event.code.startsWith('Arrow') "
    "? $event.code.slice(5) : $event.code.replace('Key', ''))])\""
)
STYLE = """
.lesionai-table { border-collapse: collapse; width: 100%; font-size: 0.85rem; }
.lesionai-table th, .lesionai-table td { padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: right; }
.lesionai-table tr.candidate-row { cursor: pointer; }
.lesionai-table tr.selected { background: #ffe9b3; }
.study-item { cursor: pointer; padding: 4px 8px; border-bottom: 1px solid #eee; }
.study-item:hover { background: #f2f6ff; }
.study-problem { color: #b00020; font-size: 0.8rem; }
.study-roles { color: #555; font-size: 0.8rem; }
"""


def testid(name: str) -> str:
    """The ``data-testid`` attribute of an element (trame passes unknown attributes only as raw text)."""
    return f'data-testid="{name}"'


def _study_list(actions) -> None:
    html.Div("Studies", classes="text-subtitle-1 font-weight-bold pa-2")
    with html.Div(raw_attrs=[testid("study-list")], style="max-height: 60vh; overflow-y: auto;"):
        with html.Div(
            v_for="study in studies",
            key="study.key",
            classes="study-item",
            raw_attrs=[testid("study-item")],
            click=(actions.openStudy, "[study.key]"),
        ):
            html.Div("{{ study.name }} ({{ study.kind }})", classes="font-weight-medium")
            html.Div("{{ study.path }}", classes="study-roles")
            html.Div("{{ study.roles }}", v_if="!study.problem", classes="study-roles")
            html.Div("{{ study.problem }}", v_if="study.problem", classes="study-problem")
    with html.Div(classes="d-flex align-center pa-2"):
        v3.VTextField(
            v_model=("study_text", ""),
            label="study folder inside the studies folder",
            density="compact",
            hide_details=True,
            raw_attrs=[testid("study-path")],
        )
        v3.VBtn("Open", click=(actions.openStudy, "[study_text]"), classes="ml-2", raw_attrs=[testid("open-study")])


def _analysis(actions) -> None:
    with html.Div(classes="d-flex align-center my-2"):
        v3.VBtn(
            "{{ analyze_label }}",
            click=actions.analyze,
            disabled=("!analyze_enabled",),
            color=("analysis_running || analysis_queued ? 'warning' : 'primary'",),
            raw_attrs=[testid("analyze")],
        )
        with html.Div(classes="flex-grow-1 mx-4"):
            v3.VProgressLinear(
                model_value=("analysis_progress", 0),
                height=18,
                color="primary",
                raw_attrs=[testid("analysis-progress")],
            )
        html.Span("{{ analysis_progress }} %", style="min-width: 4em;")
    html.Div("{{ status }}", raw_attrs=[testid("status")], classes="text-body-2")
    with html.Div(v_if="roles.length", classes="text-body-2 my-1", raw_attrs=[testid("roles")]):
        html.Div("{{ line.role }}: {{ line.volume }} — {{ line.reason }}", v_for="line in roles", key="line.role")


def _views(layout_manager, layout) -> None:
    with html.Div(classes="d-flex"):
        for title in VIEW_TITLES:
            html.Div(title, classes="flex-grow-1 text-center text-caption", style="flex: 1 1 0;")
    with html.Div(
        raw_attrs=[testid("views")], style=f"height: {VIEWS_HEIGHT_PX}px; display: flex; background: black;"
    ):
        layout_manager.initialize_layout_grid(layout)


def _display_controls(actions) -> None:
    with html.Div(classes="d-flex align-center"):
        v3.VSwitch(
            label="heatmap",
            model_value=("heatmap_visible", True),
            hide_details=True,
            density="compact",
            raw_attrs=[testid("heatmap-visible")],
            update_modelValue=(actions.setHeatmapVisible, "[$event]"),
        )
        v3.VSlider(
            label="opacity",
            model_value=("heatmap_opacity", 0.6),
            min=0,
            max=1,
            step=0.05,
            hide_details=True,
            thumb_label=True,
            classes="mx-4",
            raw_attrs=[testid("heatmap-opacity")],
            update_modelValue=(actions.setOpacity, "[$event]"),
        )
        v3.VSlider(
            label="threshold",
            model_value=("heatmap_threshold", 0.2),
            min=0,
            max=1,
            step=0.05,
            hide_details=True,
            thumb_label=True,
            classes="mx-4",
            raw_attrs=[testid("heatmap-threshold")],
            update_modelValue=(actions.setThreshold, "[$event]"),
        )


def _candidates(actions) -> None:
    with html.Div(classes="text-body-2 my-2", raw_attrs=[testid("case-score")]):
        html.Span("Case score {{ case_score }} — model {{ model_name }}")
    v3.VAlert(
        v_if="demo_notice && (rows.length || case_score !== '–')",
        type="warning",
        density="compact",
        text=("demo_notice",),
        raw_attrs=[testid("demo-notice")],
    )
    with html.Table(classes="lesionai-table", raw_attrs=[testid("candidates")]):
        with html.Thead(), html.Tr():
            for _, header in TABLE_COLUMNS:
                html.Th(header)
        with html.Tbody():
            with html.Tr(
                v_for="row in rows",
                key="row.id",
                classes=("['candidate-row', row.id === selected_id ? 'selected' : '']",),
                raw_attrs=[testid("candidate-row")],
                click=(actions.select, "[row.id]"),
            ):
                for key, _ in TABLE_COLUMNS:
                    html.Td(f"{{{{ row.cells['{key}'] }}}}", raw_attrs=[f'data-column="{key}"'])
    with html.Div(classes="d-flex align-center my-2"):
        v3.VBtn(
            "Place a point and classify",
            click=actions.placePoint,
            disabled=("!roles.length || point_running",),
            variant="outlined",
            raw_attrs=[testid("place-point")],
        )
        html.Span("{{ point_result }}", classes="ml-4 text-body-2", raw_attrs=[testid("point-result")])
    html.A(
        "Download the result folder (zip)",
        v_if="download_url",
        href=("download_url",),
        download=True,
        raw_attrs=[testid("download")],
    )


def build_page(server, layout_manager, actions) -> SinglePageLayout:
    """The page of one session; ``actions`` is its :class:`~LesionAIWeb.session.WebReading`."""
    server.state.trame__title = "LesionAI reading"
    server.trigger(SHORTCUT_TRIGGER)(actions.shortcut)
    with SinglePageLayout(server, full_height=True) as layout:
        layout.title.set_text(TITLE)
        with layout.toolbar:
            v3.VSpacer()
            html.Span("{{ busy_message }}", classes="text-body-2 mr-4", raw_attrs=[testid("busy")])
        with layout.content:
            client.Style(STYLE)
            with html.Div(classes="d-flex", tabindex="0", raw_attrs=[KEYDOWN]):
                with html.Div(style="width: 340px; flex: 0 0 340px;", classes="border-e"):
                    _study_list(actions)
                with html.Div(classes="flex-grow-1 pa-2", style="min-width: 0;"):
                    v3.VAlert(
                        v_if="error_message",
                        type="error",
                        density="compact",
                        closable=True,
                        text=("error_message",),
                        raw_attrs=[testid("error")],
                        click_close=actions.clearError,
                    )
                    _analysis(actions)
                    _views(layout_manager, layout)
                    _display_controls(actions)
                    _candidates(actions)
    return layout
