"""Patient cases: the one data structure every source is converted into (pure numpy)."""

from atp.cases.case import CaseError, PatientCase, Prescription, Roi
from atp.cases.grid import Grid
from atp.cases.store import SCHEMA_VERSION, load_case, save_case

__all__ = [
    "SCHEMA_VERSION",
    "CaseError",
    "Grid",
    "PatientCase",
    "Prescription",
    "Roi",
    "load_case",
    "save_case",
]
