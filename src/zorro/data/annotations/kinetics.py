"""Kinetics(-Sounds) annotation parsers; they live in :mod:`zorro.data.registry.kinetics_sounds`
(one module per dataset) and are re-exported here, where they were first published."""

from zorro.data.registry.kinetics_sounds import (  # noqa: F401
    KineticsCSV,
    KineticsTree,
    kinetics_clip_id,
    kinetics_sounds_classes,
    read_class_list,
    read_kinetics_csv,
    scan_kinetics_tree,
)

__all__ = ["KineticsCSV", "KineticsTree", "read_class_list", "kinetics_sounds_classes", "read_kinetics_csv",
           "scan_kinetics_tree", "kinetics_clip_id"]
