"""The lesionai command line: one module per command group.
"""
