"""Long jobs: JSON-lines progress events, the cancel token, and the subprocess job runner.
"""
