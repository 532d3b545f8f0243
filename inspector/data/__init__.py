"""Data intake: safe image loading, zip extraction, dataset discovery, checks and splits."""
from __future__ import annotations

from inspector.data.archive import extract_zip
from inspector.data.discovery import UNLABELED, LabeledDataset, Sample, discover_dataset, discover_images
from inspector.data.images import (
    IMAGE_EXTENSIONS,
    MAX_IMAGE_PIXELS,
    content_hash,
    is_image_path,
    load_image,
    to_rgb_array,
)
from inspector.data.splits import ValidationPlan, plan_validation, stratified_holdout
from inspector.data.types import Skipped
from inspector.data.validation import Finding, ValidationReport, validate_dataset

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_PIXELS",
    "UNLABELED",
    "Finding",
    "LabeledDataset",
    "Sample",
    "Skipped",
    "ValidationPlan",
    "ValidationReport",
    "content_hash",
    "discover_dataset",
    "discover_images",
    "extract_zip",
    "is_image_path",
    "load_image",
    "plan_validation",
    "stratified_holdout",
    "to_rgb_array",
    "validate_dataset",
]
