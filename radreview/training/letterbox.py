"""The model input of training is made by the inference package's own functions.

Training and the viewer must turn displayed pixels into the model input in exactly the same
way, so training does not keep its own copy: ``letterbox`` (aspect-preserving bilinear resize,
centred, padded) and ``normalise`` come from :mod:`radreview.inference.preprocess`, which is
torch-free.
"""

from radreview.inference.preprocess import letterbox, normalise

__all__ = ["letterbox", "normalise"]
