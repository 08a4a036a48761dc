"""Dosimetry (pure numpy/scipy): DVH endpoints, plan indices, BED/EQD2, OpenKBP scores, stats."""

from atp.dosimetry.dvh import (
    DVH,
    cumulative_dvh,
    dose_at_volume_cc,
    dose_at_volume_percent,
    max_dose,
    mean_dose,
    min_dose,
    near_max_dose,
    roi_volume_cc,
    volume_at_dose,
    voxel_volume_cc,
)
from atp.dosimetry.indices import (
    gradient_index,
    homogeneity_index_icru83,
    paddick_ci,
    rtog_ci,
)
from atp.dosimetry.openkbp_scores import (
    case_scores,
    challenge_scores,
    cohort_scores,
    dose_score,
    dvh_score,
    openkbp_dvh_metrics,
)
from atp.dosimetry.radiobiology import bed, eqd2, physical_dose_for_eqd2
from atp.dosimetry.stats import (
    bonferroni,
    mean_difference_ci,
    paired_ttest,
    relative_difference_percent,
)

__all__ = [
    "DVH",
    "bed",
    "bonferroni",
    "case_scores",
    "challenge_scores",
    "cohort_scores",
    "cumulative_dvh",
    "dose_at_volume_cc",
    "dose_at_volume_percent",
    "dose_score",
    "dvh_score",
    "eqd2",
    "gradient_index",
    "homogeneity_index_icru83",
    "max_dose",
    "mean_difference_ci",
    "mean_dose",
    "min_dose",
    "near_max_dose",
    "openkbp_dvh_metrics",
    "paddick_ci",
    "paired_ttest",
    "physical_dose_for_eqd2",
    "relative_difference_percent",
    "roi_volume_cc",
    "rtog_ci",
    "volume_at_dose",
    "voxel_volume_cc",
]
