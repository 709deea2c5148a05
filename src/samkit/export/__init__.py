"""Exports of samkit models for other runtimes (ONNX), and video tracking that runs the exported graphs."""

from .onnx import ExportError, export_onnx
from .tracker import OnnxVideoTracker

__all__ = ["ExportError", "OnnxVideoTracker", "export_onnx"]
