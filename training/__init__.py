"""The training pipeline: ``python -m training.train`` and ``python -m training.evaluate``.

It writes checkpoints in ``model``'s format, so its output is served by ``app`` as is.
"""
