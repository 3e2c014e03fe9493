"""Evaluation: picai-eval lesion/case metrics, plots, ROC and bootstrap helpers, model validation.
"""
