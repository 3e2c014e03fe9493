"""Which 3D Slicer can run LesionAI: checked before anything else of LesionAI is imported.

Plain Python 3.9 syntax on purpose: an older Slicer (5.8 ships Python 3.9) must be able to import
this module to show its one message, where the engine itself would fail with a syntax error.
"""

MINIMUM_SLICER = (5, 10)
MINIMUM_PYTHON = (3, 10)
UNSUPPORTED_MESSAGE = "LesionAI needs 3D Slicer 5.10 or newer"


def unsupported_reason(slicer_version, python_version):
    """``None`` when LesionAI runs here, else the one message to show.

    Args:
        slicer_version: ``(major, minor)`` of the Slicer application, or ``None`` outside the application
            (the ``slicer-core`` wheel), where only Python counts.
        python_version: ``sys.version_info`` (or its first two numbers).
    """
    python = tuple(python_version[:2])
    if slicer_version is not None and tuple(slicer_version[:2]) < MINIMUM_SLICER:
        found = ".".join(str(part) for part in slicer_version[:2])
        return f"{UNSUPPORTED_MESSAGE} (this is Slicer {found}); install a current Slicer from download.slicer.org."
    if python < MINIMUM_PYTHON:
        found = ".".join(str(part) for part in python)
        return f"{UNSUPPORTED_MESSAGE} (its Python is {found}; LesionAI needs Python 3.10 or newer)."
    return None


def slicer_version(slicer_module):
    """``(major, minor)`` of the running Slicer application, ``None`` without one (slicer-core)."""
    app = getattr(slicer_module, "app", None)
    if app is None or not hasattr(app, "majorVersion"):
        return None
    return (int(app.majorVersion), int(app.minorVersion))
