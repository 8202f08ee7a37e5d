"""Phrase bank of the phantom report writer (own wording, CT-RATE-like style).

Positive templates always name the finding with a term a rule-based labeller can match
(nodule, ground-glass opacity, consolidation, atelectasis/atelectatic, emphysema/emphysematous,
pleural effusion, pericardial effusion, cardiomegaly/enlarged heart, hiatal hernia, lymph node /
lymphadenopathy, calcified/calcific plaques of the aorta or coronary arteries, fibrotic sequela,
mosaic attenuation, peribronchial/bronchial wall thickening, bronchiectasis/bronchiectatic,
interlobular septal thickening / thickened interlobular septa, catheter/pacemaker/tube).
Fields: ``{size}``, ``{long}``, ``{amount}``, ``{lung}`` (the right lung / both lungs),
``{lobe}`` (right upper lobe / both lower lobes), ``{station}``, ``{kind}``, ``{vessels}``.
"""

from __future__ import annotations

POSITIVE: dict[str, list[str]] = {
    "port catheter": [
        "A right-sided venous port catheter is in place with its tip in the superior vena cava.",
        "There is a port catheter entering via the right subclavian vein, its tip at the cavoatrial junction.",
        "Port catheter noted in the right anterior chest, with the catheter tip in the distal superior vena cava.",
    ],
    "pacemaker": [
        "A pacemaker generator lies in the left pectoral region, its lead ending in the right ventricle.",
        "There is a permanent cardiac pacemaker with a transvenous lead.",
        "A pacemaker device is seen in the left anterior chest wall with a lead coursing through the superior vena cava.",
    ],
    "nasogastric tube": [
        "A nasogastric tube courses through the esophagus with its tip in the stomach.",
        "Nasogastric tube in place.",
        "There is a feeding tube passing down the esophagus into the stomach.",
    ],
    "Arterial wall calcification mild": [
        "Scattered calcified atheromatous plaques are present in the wall of the thoracic aorta.",
        "There are a few calcific plaques in the aortic wall.",
        "Mild atherosclerotic calcification of the aortic arch and descending aorta is noted.",
    ],
    "Arterial wall calcification marked": [
        "Extensive calcified atherosclerotic plaques line the wall of the aortic arch and descending thoracic aorta.",
        "Marked calcific atheromatous changes are seen along the aortic wall.",
        "Numerous calcified plaques are noted in the walls of the thoracic aorta.",
    ],
    "Cardiomegaly": [
        "The heart is {amount}ly enlarged (cardiomegaly).",
        "Cardiomegaly is present.",
        "Cardiac dimensions are increased, in keeping with cardiomegaly.",
        "The heart is enlarged.",
    ],
    "Pericardial effusion": [
        "A pericardial effusion measuring {size} mm at its thickest is present.",
        "There is a {amount} pericardial effusion up to {size} mm in thickness.",
        "Pericardial effusion reaching {size} mm is seen around the heart.",
    ],
    "Coronary artery wall calcification": [
        "Calcified plaques are seen in the coronary arteries ({vessels}).",
        "Coronary artery calcification is noted along the {vessels} {arteries}.",
        "There are calcific atheromatous plaques in the walls of the {vessels} coronary {arteries}.",
    ],
    "Hiatal hernia": [
        "A hiatal hernia measuring about {size} mm is present.",
        "Part of the stomach herniates through the esophageal hiatus, consistent with a hiatal hernia of {size} mm.",
        "There is a sliding type hiatal hernia.",
    ],
    "Lymphadenopathy": [
        "An enlarged mediastinal lymph node measuring {long}x{size} mm is seen in the {station} region.",
        "Mediastinal lymphadenopathy is present at the {station} station, the node measuring {long}x{size} mm.",
        "A pathologically enlarged lymph node with a short axis of {size} mm is noted in the {station} area of the mediastinum.",
    ],
    "Emphysema": [
        "{Kind} emphysematous changes are seen in the upper lobes of {lung}.",
        "{Kind} emphysema predominantly involves {the_lobe}.",
        "There are {amount} emphysematous areas in {the_lobe}.",
    ],
    "Atelectasis": [
        "Subsegmental atelectasis is seen in the posterobasal segment of {the_lobe}.",
        "Atelectatic changes are noted at the base of {lung}.",
        "There is dependent atelectasis in {the_lobe}.",
    ],
    "Lung nodule": [
        "A {size} mm solid nodule is present in {the_lobe}.",
        "In {the_lobe} there is a nodule measuring {size} mm.",
        "A pulmonary nodule of {size} mm in diameter is noted in {the_lobe}.",
        "A solid nodular lesion measuring {size} mm is observed in {the_lobe}.",
    ],
    "Lung opacity": [
        "An area of ground-glass opacity measuring about {size} mm is seen in {the_lobe}.",
        "There is a ground glass density area in {the_lobe}.",
        "Patchy ground-glass opacity involves {the_lobe}.",
    ],
    "Pulmonary fibrotic sequela": [
        "Linear fibrotic sequelae are seen in {the_lobe}.",
        "Fibrotic bands consistent with sequelae are noted in the apical parts of {lung}.",
        "Parenchymal fibrotic sequela changes are present in {the_lobe}.",
    ],
    "Pleural effusion": [
        "{Amount} pleural effusion is present {on_side}, measuring {size} mm at its thickest.",
        "There is a {amount} {side_adj} pleural effusion of {size} mm.",
        "Pleural effusion is seen {on_side}, {size} mm thick.",
    ],
    "Mosaic attenuation pattern": [
        "A mosaic attenuation pattern is seen in both lungs.",
        "Both lungs show mosaic attenuation, which may reflect small airway disease.",
        "The lung parenchyma has a heterogeneous, mosaic attenuation pattern.",
    ],
    "Peribronchial thickening": [
        "Peribronchial thickening is noted around the central bronchi.",
        "The bronchial walls are thickened (peribronchial thickening).",
        "There is bronchial wall thickening at both hila.",
    ],
    "Consolidation": [
        "A consolidation area of about {size} mm with air bronchograms is seen in {the_lobe}.",
        "There is consolidation in {the_lobe}.",
        "Consolidated lung parenchyma with air bronchograms is present in {the_lobe}.",
    ],
    "Bronchiectasis": [
        "{Kind} bronchiectasis is seen in {the_lobe}.",
        "There are bronchiectatic changes in the lower lobe of {lung}.",
        "Dilated, thick-walled bronchi consistent with bronchiectasis are present in {the_lobe}.",
    ],
    "Interlobular septal thickening": [
        "Interlobular septal thickening is seen in the subpleural parts of both lower lobes.",
        "There is subpleural interlobular septal thickening at the lung bases.",
        "Thickened interlobular septa are noted in both lower lobes.",
    ],
    "Sclerotic bone lesion": [
        "A sclerotic lesion measuring {size} mm is seen in a thoracic vertebral body.",
        "There is a dense sclerotic lesion of {size} mm in the thoracic spine.",
        "A {size} mm sclerotic focus is noted in a thoracic vertebra.",
    ],
    "Thyroid goitre": [
        "The {side} lobe of the thyroid gland is enlarged.",
        "There is enlargement of the {side} thyroid lobe, in keeping with a goitre.",
        "An enlarged {side} thyroid lobe is noted.",
    ],
    "Breast mass": [
        "A soft-tissue mass measuring {size} mm is seen in the {side} breast.",
        "There is a {size} mm soft-tissue mass in the {side} breast.",
        "A {size} mm mass is noted in the {side} breast.",
    ],
    "Hepatic cyst": [
        "A {size} mm cyst is seen in the liver.",
        "There is a hypodense cyst measuring {size} mm in the liver.",
        "A simple cyst of {size} mm is noted in the liver.",
    ],
    "Degenerative osteophytes": [
        "Degenerative osteophytes are present at the margins of the thoracic vertebrae.",
        "There are degenerative changes with osteophytes in the thoracic vertebral bodies.",
    ],
    "Vertebral compression": [
        "There is {amount} loss of height of a mid-thoracic vertebral body, consistent with a compression deformity.",
        "A {amount} compression deformity of one thoracic vertebra is noted.",
    ],
}
"""Positive templates by label (Medical material: by device; aortic calcification: by amount)."""

NEGATIVE: dict[str, tuple[float, list[str]]] = {
    "Arterial wall calcification": (0.15, ["No calcified plaque is seen in the aortic wall."]),
    "Cardiomegaly": (
        0.85,
        [
            "Heart size and contour are normal.",
            "The heart is of normal size.",
            "Cardiac size is within normal limits.",
        ],
    ),
    "Pericardial effusion": (
        0.9,
        [
            "No pericardial effusion or thickening is seen.",
            "There is no pericardial effusion.",
            "Pericardial effusion or thickening was not detected.",
        ],
    ),
    "Coronary artery wall calcification": (0.2, ["No coronary artery calcification is seen."]),
    "Hiatal hernia": (0.25, ["No hiatal hernia is seen.", "There is no hiatal hernia."]),
    "Lymphadenopathy": (
        0.85,
        [
            "No enlarged lymph nodes are seen in the mediastinum or hila.",
            "No mediastinal lymphadenopathy of pathological size is detected.",
            "Mediastinal and hilar lymph nodes are not enlarged.",
        ],
    ),
    "Emphysema": (0.15, ["No emphysema is seen.", "There are no emphysematous changes."]),
    "Atelectasis": (0.1, ["No atelectasis is present."]),
    "Lung nodule": (
        0.6,
        [
            "No pulmonary nodule is seen.",
            "No nodular lesion is detected in either lung.",
            "There is no nodule in the lung parenchyma.",
        ],
    ),
    "Lung opacity": (
        0.25,
        [
            "No ground-glass opacity is identified in either lung.",
            "There is no ground glass density in the lungs.",
        ],
    ),
    "Pulmonary fibrotic sequela": (0.1, ["No fibrotic sequelae are seen in the lungs."]),
    "Pleural effusion": (
        0.85,
        [
            "No pleural effusion is seen.",
            "There is no pleural effusion or pleural thickening.",
            "Pleural effusion was not detected.",
        ],
    ),
    "Mosaic attenuation pattern": (0.05, ["No mosaic attenuation pattern is seen in the lungs."]),
    "Peribronchial thickening": (0.05, ["No peribronchial thickening is seen."]),
    "Consolidation": (0.35, ["No consolidation is present.", "There is no area of consolidation."]),
    "Bronchiectasis": (0.1, ["No bronchiectasis is seen."]),
    "Interlobular septal thickening": (0.05, ["No interlobular septal thickening is seen."]),
}
"""(probability of saying it when absent, templates) per CT-RATE label."""

NORMAL: dict[str, list[str]] = {
    "trachea and bronchi": [
        "The trachea and both main bronchi are patent.",
        "Trachea and main bronchi are of normal calibre and open.",
        "The trachea is midline and the main bronchi are open.",
    ],
    "heart": [
        "The thoracic aorta has a normal diameter.",
        "Mediastinal vascular structures are of normal calibre.",
        "The mediastinal fat planes are preserved.",
        "The great vessels of the mediastinum have a normal calibre.",
    ],
    "esophagus": [
        "The thoracic esophagus has a normal calibre without wall thickening.",
        "Esophageal wall thickness is normal.",
        "The esophagus is unremarkable along its thoracic course.",
    ],
    "thyroid": [
        "The included parts of the thyroid gland are unremarkable.",
        "Both thyroid lobes appear normal.",
    ],
    "lung": [
        "Both lungs are normally aerated.",
        "The lung parenchyma is clear.",
        "Aeration of both lungs is normal.",
        "No infiltrative lesion is seen in the lung parenchyma.",
        "The bronchovascular markings of both lungs are normal.",
    ],
    "pleura": [
        "The pleural surfaces are smooth.",
        "The diaphragm contours are normal.",
        "The pleural spaces and costophrenic angles are clear.",
    ],
    "abdomen": [
        "The upper abdominal organs within the scan are unremarkable.",
        "No focal lesion is seen in the visualised part of the liver.",
        "The visualised liver, spleen and adrenal glands are normal.",
        "Both adrenal glands are normal in size.",
        "No free fluid is seen in the upper abdomen.",
        "The spleen and gallbladder appear normal in the included sections.",
    ],
    "bone": [
        "The bony structures are unremarkable.",
        "Vertebral body heights are preserved.",
        "No lytic or sclerotic bone lesion is seen.",
        "No fracture is seen in the visualised bones.",
        "The thoracic vertebrae are normally aligned.",
    ],
    "breast female": [
        "Breast tissue is seen bilaterally without a focal mass.",
        "Both breasts are unremarkable within the field of view.",
    ],
    "breast male": [
        "The chest wall soft tissues are normal.",
        "The axillary soft tissues are normal.",
    ],
}
"""Normal boilerplate per structure (used when the structure has no positive finding)."""

LUNG_INTRO = [
    "The lungs were assessed in the parenchymal window.",
    "On lung window images the following is noted.",
]
