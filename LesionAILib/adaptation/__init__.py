"""Adaptation to a site: similarity and uncertainty ordering, multi-site curriculum, deployment dataset, fine-tuning.
"""
