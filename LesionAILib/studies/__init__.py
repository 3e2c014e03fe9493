"""Studies in: DICOM discovery and series reading, the series-role rules, image files and PI-CAI folders, the Case.
"""
