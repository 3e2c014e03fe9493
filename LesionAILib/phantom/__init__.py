"""Synthetic mpMRI phantoms: site profiles, tissues, shapes, anatomy, rendering, acquisition, cohort writing.
"""
