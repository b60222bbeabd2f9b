"""Exporting a detector bundle to ONNX (:mod:`dgmix.export.writer`, :mod:`dgmix.export.graph`) and
scoring with the exported file on onnxruntime (:mod:`dgmix.export.runtime`). Extra ``[export]``."""
