"""Glue between the library and the MONAI Bundle: data preparation, per-stage factories, resume, evaluate, infer.

The bundle's JSON configs call these functions (``$lumbar_monai.workflows....``) so that no Python is pasted into
configs (the model-zoo habit); each function is also usable on its own.
"""
