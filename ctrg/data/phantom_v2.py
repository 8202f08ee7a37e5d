"""Phantom v2: the painting order of its findings (labels and structure findings).

The heart's size and sac come first (they move the lung border), then diffuse lung
patterns, pleural fluid, the large lung lesions, focal lesions, the other mediastinal
findings, devices and the structure findings (later paint wins).
"""

from __future__ import annotations

from ctrg.data import phantom_mediastinal_findings as v1_mediastinum
from ctrg.data import phantom_v2_organs as organs
from ctrg.data import phantom_v2_paint as lung
from ctrg.data.phantom_v2_findings import FINDING_VALUES
from ctrg.data.phantom_v2_paint import Painter

PAINT_ORDER_V2: tuple[tuple[str, Painter], ...] = (
    ("Pericardial effusion", organs.paint_pericardial_effusion),
    ("Cardiomegaly", v1_mediastinum.paint_cardiomegaly),
    ("Mosaic attenuation pattern", lung.paint_mosaic),
    ("Emphysema", lung.paint_emphysema),
    ("Interlobular septal thickening", lung.paint_septal),
    ("Pleural effusion", lung.paint_effusion),
    ("Consolidation", lung.paint_consolidation),
    ("Lung opacity", lung.paint_opacity),
    ("Atelectasis", lung.paint_atelectasis),
    ("Pulmonary fibrotic sequela", lung.paint_fibrosis),
    ("Bronchiectasis", lung.paint_bronchiectasis),
    ("Peribronchial thickening", lung.paint_peribronchial),
    ("Lung nodule", lung.paint_nodule),
    ("Coronary artery wall calcification", organs.paint_coronary),
    ("Arterial wall calcification", organs.paint_aortic_calcification),
    ("Lymphadenopathy", organs.paint_lymph_nodes),
    ("Hiatal hernia", v1_mediastinum.paint_hiatal_hernia),
    ("Medical material", organs.paint_device),
    ("Sclerotic bone lesion", organs.paint_bone_lesion),
    ("Thyroid goitre", organs.paint_goitre),
    ("Breast mass", organs.paint_breast_mass),
    ("Hepatic cyst", organs.paint_liver_cyst),
)
"""Painting order of phantom v2 (every v2 finding appears once)."""


def finding_value(name: str) -> int:
    """Finding-map value of a v2 finding (CT-RATE labels 1..18, structure findings 19..)."""
    return FINDING_VALUES[name]
