"""DICOM RT in and out (pure numpy + pydicom).

Import: `scan_dicom_folder` groups the files of a folder tree by patient; for each
patient `import_patient` reads the CT series, the RTSTRUCT that references it and, when
present, the RTPLAN (beams, fractions, target doses) and RTDOSE into a `PatientCase` on
the working grid, recording the original geometry. Export: `export_rtdose` and
`export_rtstruct` write results back onto the original CT geometry. ROI names map to
canonical names through `resolve_roi_name`.
"""

from atp.io.dicom.aliases import (
    aliases_from_config,
    looks_like_target,
    ptv_dose_from_name,
    resolve_roi_name,
)
from atp.io.dicom.ct import CtVolume, read_ct_series
from atp.io.dicom.export import export_rtdose, export_rtstruct, mask_contours_mm
from atp.io.dicom.importer import import_patient
from atp.io.dicom.resample import resample_linear, resample_mask, working_grid
from atp.io.dicom.rtdose import DoseVolume, read_rtdose
from atp.io.dicom.rtplan import PlanInfo, read_rtplan
from atp.io.dicom.rtstruct import (
    RoiContours,
    StructureSet,
    fill_polygons_evenodd,
    rasterize_roi,
    read_rtstruct,
)
from atp.io.dicom.scan import (
    DicomPatient,
    DicomSelection,
    DicomSeries,
    scan_dicom_folder,
    select_patient_files,
)

__all__ = [
    "CtVolume",
    "DicomPatient",
    "DicomSelection",
    "DicomSeries",
    "DoseVolume",
    "PlanInfo",
    "RoiContours",
    "StructureSet",
    "aliases_from_config",
    "export_rtdose",
    "export_rtstruct",
    "fill_polygons_evenodd",
    "import_patient",
    "looks_like_target",
    "mask_contours_mm",
    "ptv_dose_from_name",
    "rasterize_roi",
    "read_ct_series",
    "read_rtdose",
    "read_rtplan",
    "read_rtstruct",
    "resample_linear",
    "resample_mask",
    "resolve_roi_name",
    "scan_dicom_folder",
    "select_patient_files",
    "working_grid",
]
