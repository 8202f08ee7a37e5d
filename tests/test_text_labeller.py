"""The rule-based CT-RATE labeller: negation, uncertainty, synonyms, attributes, bad input."""

from __future__ import annotations

import pytest

from ctrg.anatomy import CTRATE_LABELS
from ctrg.text.labeller import Labeller, load_labeller


@pytest.fixture(scope="module")
def labeller() -> Labeller:
    return Labeller()


def positives(labeller: Labeller, text: str) -> set[str]:
    return {k for k, v in labeller.label(text).items() if v}


@pytest.mark.parametrize(
    "text",
    [
        "No pleural effusion.",
        "Pleural effusion was not observed.",
        "Effusion was not observed in the pleural spaces.",
        "No evidence of consolidation or nodule.",
        "Pericardial effusion-thickening was not observed.",
        "No pleural or pericardial effusion was detected.",
        "No enlarged lymph nodes in prevascular, pre-paratracheal, subcarinal or bilateral "
        "hilar-axillary pathological dimensions were detected.",
        "Aeration of both lung parenchyma is normal and no nodular or infiltrative lesion is "
        "detected in the lung parenchyma.",
        "Heart contour and size are normal.",
        "Nonspecific findings are not observed.",
    ],
)
def test_negated_or_normal_sentences_give_no_label(labeller, text):
    assert positives(labeller, text) == set()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("There is a minimal pleural effusion on the right.", {"Pleural effusion"}),
        (
            "Effusion reaching 11 mm was observed in the pericardial space.",
            {"Pericardial effusion"},
        ),
        ("Bilateral effusion reaching 2 cm was observed in both hemithorax.", {"Pleural effusion"}),
        (
            "Calcific atherosclerotic changes are observed in the wall of the thoracic aorta and "
            "coronary artery.",
            {"Arterial wall calcification", "Coronary artery wall calcification"},
        ),
        (
            "Millimetric atheroma plaques in the coronary arteries.",
            {"Coronary artery wall calcification"},
        ),
        ("Heart size increased (cardiomegaly).", {"Cardiomegaly"}),
        ("Sliding type hiatal hernia is observed.", {"Hiatal hernia"}),
        ("There are millimetric lymph nodes in the mediastinum.", {"Lymphadenopathy"}),
        ("Emphysematous changes in both lungs.", {"Emphysema"}),
        ("Subsegmental atelectasis in the lower lobe.", {"Atelectasis"}),
        ("Fibroatelectatic sequelae changes in the lingula.", {"Pulmonary fibrotic sequela"}),
        ("A nonspecific 4 mm nodule in the right lung upper lobe.", {"Lung nodule"}),
        ("Patchy ground-glass opacities in both lungs.", {"Lung opacity"}),
        ("Mosaic attenuation pattern in both lungs.", {"Mosaic attenuation pattern"}),
        ("Bilateral peribronchial thickening was observed.", {"Peribronchial thickening"}),
        ("Consolidation in the left lower lobe.", {"Consolidation"}),
        ("Cylindrical bronchiectasis in the lower lobes.", {"Bronchiectasis"}),
        ("Interlobular septal thickenings in both lungs.", {"Interlobular septal thickening"}),
        ("A port catheter extending to the superior vena cava is observed.", {"Medical material"}),
        # a clause break ends the negation's scope
        (
            "No pleural effusion, but consolidation is seen in the right lower lobe.",
            {"Consolidation"},
        ),
        # a nodule of another organ is not a lung nodule
        ("There is a hypodense nodule in the left thyroid lobe.", set()),
    ],
)
def test_affirmed_findings(labeller, text, expected):
    assert positives(labeller, text) == expected


def test_uncertain_mention_counts_as_positive_by_default(labeller):
    assert positives(labeller, "Findings compatible with consolidation?") == {"Consolidation"}


def test_findings_keep_side_and_lobe(labeller):
    mentions = [m for m in labeller.findings("Atelectasis in the right lower lobe.")]
    assert len(mentions) == 1
    m = mentions[0]
    assert (m.label, m.negated, m.side, m.lobe) == ("Atelectasis", False, "right", "lower lobe")
    neg = labeller.findings("No pleural effusion on the left.")[0]
    assert neg.negated and neg.side == "left"


def test_label_many_matches_label_and_handles_bad_input(labeller):
    texts = [
        "",
        None,
        "<b>Cardiomegaly.</b>",
        "Akciğerlerde nodül izlenmedi.",
        "x" * 30000,
        "Consolidation in the left lung. " * 1000,
    ]
    many = labeller.label_many(texts)
    assert many == [labeller.label(t) for t in texts]
    assert all(list(row) == list(CTRATE_LABELS) for row in many)
    assert sum(many[0].values()) == 0
    assert many[2]["Cardiomegaly"] == 1
    assert many[5]["Consolidation"] == 1


def test_load_labeller_hook():
    assert isinstance(load_labeller("rules"), Labeller)
    with pytest.raises(ValueError, match="module:factory"):
        load_labeller("not-a-spec")
    with pytest.raises(ValueError, match="cannot load"):
        load_labeller("no_such_module_xyz:make")
    with pytest.raises(ValueError, match="label_many"):
        load_labeller("collections:OrderedDict")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # "thickness increase(s)" / "increase in thickness" = thickening (translated reports)
        (
            "Interlobular-intralobular septal thickness increases are seen in the right lung.",
            {"Interlobular septal thickening"},
        ),
        (
            "Interlobar septal thickness increase in the left lower lobe.",
            {"Interlobular septal thickening"},
        ),
        (
            "An increase in thickness is observed in the peribronchial sheath.",
            {"Peribronchial thickening"},
        ),
        # hypothetical ("to be evaluated for X") is not an observation
        ("Clinical correlation in terms of infiltration is recommended.", set()),
        ("The lesion was primarily evaluated for consolidation.", set()),
        # "loss of" negates only what directly follows it
        ("Loss of consolidation is observed in this examination.", set()),
        (
            "Slight loss of aeration in the left lower lobe, position-dependent atelectasis.",
            {"Atelectasis"},
        ),
        # a question inside a worded parenthetical covers only that parenthetical
        ("Enlarged lymph nodes are seen in the mediastinum (metastasis?).", {"Lymphadenopathy"}),
        ("A soft tissue lesion is seen in the mediastinum (lymph node?).", set()),
        ("Mediastinal lymph node (?).", set()),
        # not assessable is not present
        ("Other nodules cannot be evaluated due to motion artifact.", set()),
        # plural abbreviation of lymphadenopathy
        ("Multiple LAPs in the paratracheal and subcarinal stations.", {"Lymphadenopathy"}),
        # a mass infiltrating a structure is invasion, not an infiltrate
        ("A large mass infiltrating the chest wall is seen in the left lung.", set()),
        ("Patchy infiltrates in the right lower lobe.", {"Lung opacity"}),
        # "ectasia" of the bronchi is bronchiectasis; an air bronchogram is not
        ("Diffuse ectasia is observed in the bronchial structures.", {"Bronchiectasis"}),
        ("Mild bronchial ectasias in the middle lobe.", {"Bronchiectasis"}),
        ("Atelectasis with air bronchograms in the right lower lobe.", {"Atelectasis"}),
    ],
)
def test_general_rules(labeller, text, expected):
    assert positives(labeller, text) == expected


def test_hypothetical_mention_is_kept_but_not_affirmed(labeller):
    (m,) = labeller.findings("Correlation in terms of infiltration is recommended.")
    assert (m.label, m.negated, m.hypothetical) == ("Lung opacity", False, True)


def test_bench_tuning_only_never_shows_fold_zero(tmp_path, capsys):
    from ctrg.bench.text import main
    from ctrg.text.evaluation import fold_of

    ids = [f"case_{i}" for i in range(40)]
    assert {fold_of(i) for i in ids} == set(range(5))
    rows = []
    for i, case in enumerate(ids):
        row = dict.fromkeys(CTRATE_LABELS, 0)
        row["Lung nodule"] = 1  # the text never says so: every case is a nodule FN
        rows.append({"AccessionNo": case, "report_text": "Cardiomegaly." if i % 2 else "", **row})
    folder = tmp_path / "ctrate-labelled-reports"
    folder.mkdir()
    import pandas as pd

    pd.DataFrame(rows).to_csv(folder / "train.csv", index=False)
    args = ["--which", "labeller", "--data", str(tmp_path), "--errors", "100"]
    assert main([*args, "--tuning-only", "--error-label", "Lung nodule"]) == 0
    out = capsys.readouterr().out
    assert "fold 0" not in out and "\n0 " not in out
    shown = [line.split()[-1] for line in out.splitlines() if line.startswith("  FN ")]
    assert len(shown) == sum(fold_of(i) != 0 for i in ids)
    assert all(fold_of(case) != 0 for case in shown)
    assert main(args) == 0
    assert "fold 0 (held out" in capsys.readouterr().out
