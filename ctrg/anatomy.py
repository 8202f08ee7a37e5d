"""The structure vocabulary and the CT-RATE abnormality labels: one source for parser and model.

Structure sets are looked up by name so that a brain set can be added later as data
(``ctrg/text/lexicon_<set>.yaml``) without code changes; the chest set is the default.
"""

from __future__ import annotations

CHEST_STRUCTURES: tuple[str, ...] = (
    "trachea and bronchi",
    "heart",  # heart, mediastinum and great vessels
    "lung",
    "esophagus",
    "pleura",  # pleura, thoracic wall and diaphragm
    "bone",
    "thyroid",
    "breast",  # breast, chest wall and axilla
    "abdomen",
    "others",
)
"""The 10 chest structures of the method, in model order (index = structure id)."""

STRUCTURE_SETS: dict[str, tuple[str, ...]] = {"chest": CHEST_STRUCTURES}

CTRATE_LABELS: tuple[str, ...] = (
    "Medical material",
    "Arterial wall calcification",
    "Cardiomegaly",
    "Pericardial effusion",
    "Coronary artery wall calcification",
    "Hiatal hernia",
    "Lymphadenopathy",
    "Emphysema",
    "Atelectasis",
    "Lung nodule",
    "Lung opacity",
    "Pulmonary fibrotic sequela",
    "Pleural effusion",
    "Mosaic attenuation pattern",
    "Peribronchial thickening",
    "Consolidation",
    "Bronchiectasis",
    "Interlobular septal thickening",
)
"""The 18 CT-RATE abnormality labels, in the CT-RATE column order."""

CTRATE_LABEL_STRUCTURE: dict[str, str] = {
    "Medical material": "others",
    "Arterial wall calcification": "heart",
    "Cardiomegaly": "heart",
    "Pericardial effusion": "heart",
    "Coronary artery wall calcification": "heart",
    "Hiatal hernia": "esophagus",
    "Lymphadenopathy": "heart",
    "Emphysema": "lung",
    "Atelectasis": "lung",
    "Lung nodule": "lung",
    "Lung opacity": "lung",
    "Pulmonary fibrotic sequela": "lung",
    "Pleural effusion": "pleura",
    "Mosaic attenuation pattern": "lung",
    "Peribronchial thickening": "trachea and bronchi",
    "Consolidation": "lung",
    "Bronchiectasis": "lung",
    "Interlobular septal thickening": "lung",
}
"""The chest structure (CHEST_STRUCTURES name) whose sentences describe each CT-RATE label."""


def structures(structure_set: str = "chest") -> tuple[str, ...]:
    """Return the structure names of a named set.

    Args:
        structure_set: name of the set, e.g. ``"chest"``.

    Raises:
        ValueError: if the set is unknown.
    """
    try:
        return STRUCTURE_SETS[structure_set]
    except KeyError:
        raise ValueError(
            f"unknown structure set {structure_set!r}; known: {sorted(STRUCTURE_SETS)}"
        ) from None
