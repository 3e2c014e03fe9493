"""Static checks of the Slicer module: the .ui file, byte-compilation, imports with and without Qt, CMake lists.

These run without the Slicer application. Widget names and parameter names are read from the
source with ``ast``/regular expressions and from ``Resources/UI/LesionAI.ui`` with an XML parser.
"""

from __future__ import annotations

import ast
import json
import py_compile
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

from conftest import ROOT, require_module

MODULE = ROOT / "LesionAI" / "LesionAI.py"
LOGIC = ROOT / "LesionAI" / "LesionAILogic"
UI_FILE = ROOT / "Resources" / "UI" / "LesionAI.ui"
MODULE_CMAKE = ROOT / "LesionAI" / "CMakeLists.txt"
# The only modules LesionAI.py may need beyond slicer-core: the Slicer application's Python/Qt parts.
APPLICATION_ONLY = {"qt", "ctk", "slicer.ScriptedLoadableModule", "slicer.parameterNodeWrapper", "slicer.i18n"}
# widget class -> parameter type it can show (slicer.parameterNodeWrapper's GUI connectors)
CONNECTABLE = {
    "qMRMLNodeComboBox": "node",
    "ctkSliderWidget": "float",
    "QSpinBox": "int",
    "QCheckBox": "bool",
    "QLineEdit": "str",
    "QComboBox": "choice",
}


def _ui_widgets() -> dict[str, ET.Element]:
    tree = ET.parse(UI_FILE)
    widgets = {}
    for element in tree.iter("widget"):
        name = element.get("name")
        assert name not in widgets, f"widget name {name} used twice in {UI_FILE.name}"
        widgets[name] = element
    return widgets


def _parameter_fields() -> dict[str, str]:
    """Field name → annotation source of the ``@parameterNodeWrapper`` class in LesionAI.py."""
    tree = ast.parse(MODULE.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(
            isinstance(d, ast.Name) and d.id == "parameterNodeWrapper" for d in node.decorator_list
        ):
            return {
                item.target.id: ast.unparse(item.annotation)
                for item in node.body
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            }
    raise AssertionError("no @parameterNodeWrapper class in LesionAI.py")


def _parameter_defaults() -> dict[str, object]:
    """Field name → default value (a literal) of the ``@parameterNodeWrapper`` class in LesionAI.py."""
    tree = ast.parse(MODULE.read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "LesionAIParameterNode")
    return {
        item.target.id: ast.literal_eval(item.value)
        for item in cls.body
        if isinstance(item, ast.AnnAssign) and item.value is not None
    }


def test_every_widget_the_module_uses_exists_in_the_ui_file():
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE.read_text(encoding="utf-8")))
    widgets = _ui_widgets()
    assert used, "LesionAI.py looks up no widgets?"
    missing = sorted(used - set(widgets))
    assert not missing, f"widgets used in LesionAI.py but absent from {UI_FILE.name}: {missing}"
    assert widgets["LesionAI"].get("class") == "qMRMLWidget"


def test_ui_parameter_bindings_name_typed_fields_of_the_parameter_node():
    fields = _parameter_fields()
    bound = {}
    for name, element in _ui_widgets().items():
        for prop in element.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[name] = (element.get("class"), prop.findtext("string"))
    assert len(bound) >= 10
    for widget, (widget_class, field) in bound.items():
        assert field in fields, f"{widget} is bound to {field!r}, which LesionAIParameterNode does not declare"
        annotation = fields[field]
        kind = CONNECTABLE.get(widget_class)
        assert kind, f"{widget}: parameter nodes cannot drive a {widget_class}"
        expected = {
            "node": annotation.startswith("slicer.vtkMRML"),
            "float": "float" in annotation,
            "int": "int" in annotation,
            "bool": annotation == "bool",
            "str": annotation == "str",
            "choice": "Choice(" in annotation,
        }[kind]
        assert expected, f"{widget} ({widget_class}) cannot show {field}: {annotation}"


def test_ui_scene_connections_reach_every_node_selector():
    widgets = _ui_widgets()
    selectors = {name for name, element in widgets.items() if element.get("class") == "qMRMLNodeComboBox"}
    connected = {
        c.findtext("receiver")
        for c in ET.parse(UI_FILE).iter("connection")
        if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
        and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"
    }
    assert selectors and selectors <= connected


def test_module_file_byte_compiles(tmp_path):
    py_compile.compile(str(MODULE), cfile=str(tmp_path / "LesionAI.pyc"), doraise=True)
    for path in LOGIC.glob("*.py"):
        py_compile.compile(str(path), cfile=str(tmp_path / f"{path.stem}.pyc"), doraise=True)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PYTHONPATH": f"{ROOT / 'LesionAI'}:{ROOT}", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )


def test_logic_package_imports_without_qt_and_the_job_side_without_vtk_or_torch():
    require_module("slicer", "needs the slicer-core wheel")
    result = _run(
        "import sys\n"
        "import LesionAILib.cli.main, LesionAILib.jobs.runner, LesionAILib.inference.results\n"
        "assert not {'vtk', 'slicer', 'qt'} & set(sys.modules), 'the job side must import the engine only'\n"
        "assert not any(name.startswith('torch') for name in sys.modules), 'reading results and jobs needs no torch'\n"
        "from LesionAILogic import LesionAILogic\n"
        "import LesionAILogic.dependencies, LesionAILogic.offscreen, LesionAILogic.logic\n"
        "assert 'slicer' in sys.modules\n"
        "assert not {'qt', 'ctk', 'PythonQt'} & set(sys.modules), sorted(set(sys.modules) & {'qt', 'ctk'})\n"
        "assert not any(name.startswith('torch') for name in sys.modules), 'torch is loaded on first use only'\n"
        "print('ok')\n"
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_module_import_outside_slicer_fails_only_on_slicer_application_modules():
    require_module("slicer", "needs the slicer-core wheel")
    result = _run(
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('LesionAI', {str(MODULE)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "try:\n"
        "    spec.loader.exec_module(module)\n"
        "except ModuleNotFoundError as error:\n"
        "    print(error.name)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in APPLICATION_ONLY


def _cmake_list(text: str, variable: str) -> list[str]:
    match = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S)
    assert match, f"no set({variable} ...) in {MODULE_CMAKE}"
    return [item for item in match.group(1).split() if not item.startswith("#")]


def test_cmake_lists_every_file_slicer_needs():
    text = MODULE_CMAKE.read_text(encoding="utf-8")
    engine = sorted(p.relative_to(ROOT / "LesionAILib").as_posix() for p in (ROOT / "LesionAILib").rglob("*.py"))
    listed = _cmake_list(text, "ENGINE_PYTHON_SCRIPTS")
    assert sorted(listed) == engine, (
        f"LesionAI/CMakeLists.txt ENGINE_PYTHON_SCRIPTS differs from LesionAILib/**/*.py: "
        f"add {sorted(set(engine) - set(listed))}, remove {sorted(set(listed) - set(engine))}"
    )
    logic = sorted(f"LesionAILogic/{p.relative_to(LOGIC).as_posix()}" for p in LOGIC.rglob("*.py"))
    scripts = _cmake_list(text, "MODULE_PYTHON_SCRIPTS")
    assert scripts[0] == "${MODULE_NAME}.py" and sorted(scripts[1:]) == logic
    for resource in _cmake_list(text, "MODULE_RESOURCES"):
        assert (ROOT / resource.replace("${MODULE_NAME}", "LesionAI")).is_file(), resource
    assert "slicerMacroBuildScriptedModule(" in text and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    top = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "add_subdirectory(LesionAI)" in top and re.search(r'set\(EXTENSION_DEPENDS\s+"?PyTorch', top)
    assert top.startswith("cmake_minimum_required(VERSION 3.28.0...3.28.0 FATAL_ERROR)")  # Slicer 5.10's template
    for field in ("CONTRIBUTORS", "DESCRIPTION"):
        assert re.search(rf'set\(EXTENSION_{field}\s+"[^"]+"\)', top), field
    assert "Needs 3D Slicer 5.10 or newer" in top
    # no URL that does not exist yet (the public repository is not published)
    assert not re.search(r"set\(EXTENSION_(HOMEPAGE|ICONURL|SCREENSHOTURLS)", top)


def test_extensions_index_entry_has_what_the_catalog_schema_requires():
    """Slicer's slicer-extension-catalog-entry schema v1.0.2 requires $schema, category and scm_url."""
    entry = json.loads((ROOT / "Resources" / "ExtensionsIndex" / "LesionAI.json").read_text(encoding="utf-8"))
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.2.json#")
    assert entry["category"] == "Segmentation" and entry["scm_url"].startswith("https://")
    assert entry["build_dependencies"] == ["PyTorch"] and entry["scm_revision"] == "main"
    assert set(entry) <= {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                          "dicom_support_rule", "build_subdirectory", "enabled", "tier"}


def test_panel_fields_of_the_wrapper_and_the_controller_state_are_the_same():
    """The Qt wrapper binds the widgets, PanelState is what the controller reads: same names, types, defaults."""
    sys.path.insert(0, str(LOGIC.parent))
    from LesionAILogic.panel.state import NODE, PANEL_FIELDS

    fields = _parameter_fields()
    assert list(fields) == [field.name for field in PANEL_FIELDS]
    for field in PANEL_FIELDS:
        annotation = fields[field.name]
        if field.type is NODE:
            assert annotation.startswith("slicer.vtkMRML"), field.name
        else:
            assert annotation == field.type.__name__ or annotation.startswith(f"Annotated[{field.type.__name__},"), (
                field.name
            )
    defaults = _parameter_defaults()
    for field in PANEL_FIELDS:
        if field.type is not NODE:
            assert defaults[field.name] == field.default, field.name


# methods of the widget that set it up or draw the controller's view (may be long); every other method is a slot
BINDING_METHODS = {"__init__", "setup", "cleanup", "enter", "exit", "resourcePath", "initializeParameterNode"}
BINDING_PREFIXES = ("_setup", "_bind", "_render", "_release", "_disconnect", "_follow")


def test_every_widget_slot_is_one_or_two_statements_into_the_controller():
    tree = ast.parse(MODULE.read_text(encoding="utf-8"))
    widget = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "LesionAIWidget")
    slots = {}
    for method in widget.body:
        if not isinstance(method, ast.FunctionDef):
            continue
        if method.name in BINDING_METHODS or method.name.startswith(BINDING_PREFIXES):
            continue
        body = [s for s in method.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
        slots[method.name] = len(body)
    assert len(slots) >= 20, sorted(slots)
    long = {name: count for name, count in slots.items() if count > 2}
    assert not long, f"widget slots must call the controller in one or two statements: {long}"
    source = MODULE.read_text(encoding="utf-8")
    assert "tryWithErrorDisplay" not in source  # it re-raises into Qt callbacks; the controller shows errors


def test_compatibility_check_names_the_version_and_accepts_5_10_and_newer():
    sys.path.insert(0, str(LOGIC.parent))
    from LesionAILogic.compatibility import unsupported_reason

    assert unsupported_reason((5, 8), (3, 9, 10)) == (
        "LesionAI needs 3D Slicer 5.10 or newer (this is Slicer 5.8); "
        "install a current Slicer from download.slicer.org."
    )
    assert unsupported_reason((5, 9), (3, 12)).startswith("LesionAI needs 3D Slicer 5.10 or newer (this is Slicer 5.9)")
    assert unsupported_reason(None, (3, 9)).endswith("(its Python is 3.9; LesionAI needs Python 3.10 or newer).")
    assert unsupported_reason((5, 10), (3, 12)) is None and unsupported_reason((6, 0), (3, 13)) is None
    assert unsupported_reason(None, (3, 12)) is None
    # the module imports the check before anything needing Python >= 3.10
    source = MODULE.read_text(encoding="utf-8")
    assert source.index("from LesionAILogic.compatibility import") < source.index("import LesionAILogic\n")
    py_compile.compile(str(LOGIC / "compatibility.py"), doraise=True)
    compat = (LOGIC / "compatibility.py").read_text(encoding="utf-8")
    assert "from __future__" not in compat and " | " not in compat and "match " not in compat


def test_icon_is_a_128_pixel_png():
    data = (ROOT / "Resources" / "Icons" / "LesionAI.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (128, 128)


def test_slicer_dependency_list_matches_the_package_dependencies():
    """What the module pip-installs inside Slicer is what pyproject.toml declares (torch, numpy, SimpleITK aside)."""
    tomllib = require_module("tomllib", "tomllib is in Python >= 3.11")
    sys.path.insert(0, str(LOGIC.parent))
    from LesionAILogic import dependencies

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    protected = {"torch", "numpy", "simpleitk"}  # Slicer's own (and the PyTorch extension's): never pip-installed
    expected = sorted(r for r in declared if re.split(r"[<>=!~ ]", r)[0].lower() not in protected)
    assert sorted(dependencies.REQUIREMENTS.values()) == expected
