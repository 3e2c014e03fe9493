"""LesionAILib: the LesionAI engine (numpy, torch, SimpleITK; never slicer, vtk or qt).

Physical coordinates are LPS millimetres (ITK/DICOM convention); arrays are [Z, Y, X];
tensors are [N, C, Z, Y, X].
"""

__version__ = "0.1.0"
