"""The ProstateX point classifier: findings, patch extraction, the patch classifier, its training, point classification.
"""
