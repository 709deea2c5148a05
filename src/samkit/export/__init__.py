"""Exports of samkit models for other runtimes (ONNX)."""

from .onnx import ExportError, export_onnx

__all__ = ["ExportError", "export_onnx"]
