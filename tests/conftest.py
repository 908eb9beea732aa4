"""Fixtures every side of the suite may use; nothing here imports the service or torch at collection time.

The stand-in model and the settings that serve it (`tests/standin.py`) are shared by the service tests
(`tests/app/`) and the manifest tests, which run it through ONNX Runtime and the app.
"""

from tests.standin import make_settings, model_path

__all__ = ["make_settings", "model_path"]
