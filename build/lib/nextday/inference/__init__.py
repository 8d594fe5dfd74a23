"""Answering with an exported model: checked input, ONNX Runtime, the five outputs."""

from nextday.inference.checks import InputError
from nextday.inference.model import ChecksumError, ModelInference

__all__ = ["ChecksumError", "InputError", "ModelInference"]
