"""Preprocessing: resampling into the T2 reference grid, intensity normalisation, crops, and the way back.
"""
