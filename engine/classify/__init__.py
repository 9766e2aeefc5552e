"""Foreground type detection for the X-Type header (person, product, animal, car, other).

    from engine.classify import ForegroundClassifier
    classifier = ForegroundClassifier.from_cache()      # once per process; thread-safe
    classifier.classify(image_rgb, matte)                # -> "person" | "product" | ...
    classifier.predict(image_rgb, matte).detail          # the COCO / ImageNet label behind it

Models are installed by `python -m engine.classify.fetch` (part of `make model`).
"""

from engine.classify.classifier import Detection, ForegroundClassifier, Prediction
from engine.classify.labels import TYPES

__all__ = ["Detection", "ForegroundClassifier", "Prediction", "TYPES"]
