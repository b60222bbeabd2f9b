"""Data layer: clip records, dataset discovery, ground truth and audio loading.

Public names (docs/architecture.md): :class:`ClipRecord`, :func:`parse_filename`, :func:`scan`,
:class:`Dataset`, :func:`load_audio`, plus helpers :func:`min_samples_for`,
:func:`canonical_machine`, :func:`parse_attributes`, :func:`read_ground_truth`,
:func:`read_attributes_csv`, and the seeded split of layouts without one (:class:`SplitConfig`,
:func:`assign_split`, :func:`write_split_csv`).
"""

from .audio import audio_problem, load_audio, min_samples_for
from .discover import Dataset, scan
from .ground_truth import GroundTruth, read_attributes_csv, read_ground_truth
from .records import (
    MACHINE_TYPES,
    ClipRecord,
    canonical_machine,
    parse_attributes,
    parse_filename,
    strip_machine_prefix,
)
from .split import GroupSplit, SplitConfig, assign_split, parse_test_normals, write_split_csv

__all__ = ["MACHINE_TYPES", "ClipRecord", "Dataset", "GroundTruth", "GroupSplit", "SplitConfig", "assign_split",
           "audio_problem", "canonical_machine", "load_audio", "min_samples_for", "parse_attributes", "parse_filename",
           "parse_test_normals", "read_attributes_csv", "read_ground_truth", "scan", "strip_machine_prefix",
           "write_split_csv"]
