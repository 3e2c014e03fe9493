"""Prostate gland segmentation with the TAPS model (PyPI ``lavlab-taps``): network, model file, preprocessing,
windowed inference, quality checks and the output folder.
"""
