"""The draft trainer: a plain PyTorch loop run as its own process (see `run.py`).

Nothing here imports `dagster`: the trainer may run in a separate environment (the Gaudi stack pins
its own torch and transformers) and talks to Dagster only through `dagster_pipes`.
"""
