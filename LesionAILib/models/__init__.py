"""Models: the networks, model files (safetensors + JSON metadata) and the versioned model store.
"""
