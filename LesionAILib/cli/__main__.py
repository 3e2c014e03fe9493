"""``python -m LesionAILib.cli``: the ``lesionai`` command (how the Slicer panel starts its jobs)."""

import sys

from LesionAILib.cli.main import main

sys.exit(main())
