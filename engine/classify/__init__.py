"""Foreground type detection for the X-Type header (person, product, animal, car, other).

    from engine.classify import ForegroundClassifier
    classifier = ForegroundClassifier(manifest.xtype["detector"], manifest.xtype["classifier"])
                                                         # once per process; thread-safe
    classifier.classify(image_rgb, matte)                # -> "person" | "product" | ...
    classifier.predict(image_rgb, matte).detail          # the COCO / ImageNet label behind it

The networks are fetched, converted to ONNX and measured by `make model` (modelprep/xtype), which
records them in the model manifest (engine/models/manifest.py).
"""

from engine.classify.classifier import Detection, ForegroundClassifier, Prediction
from engine.classify.labels import TYPES

__all__ = ["Detection", "ForegroundClassifier", "Prediction", "TYPES"]
