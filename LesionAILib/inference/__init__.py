"""Inference: the Analyzer (case -> maps -> candidates -> grades), candidate extraction, result folders.
"""
