"""Experiment tracking for the log stage: where to log (MLflow server, DagsHub, local store) and what.

Importing this package does not import mlflow; only the MLflow backend does, when it is opened.
"""
