"""Bundle folders on disk: a damaged one is left out of the list (and logged) instead of taking the app down."""

import json
import logging

import pytest

from skin_core.bundle import WEIGHTS_DIR, ModelBundle, list_bundles
from skin_core.errors import BundleError

SHIPPED = "mobilenetv2-192"


def bundle_folder(root, name, card=None, model=True):
    folder = root / name
    folder.mkdir()
    card = card if card is not None else json.loads((WEIGHTS_DIR / SHIPPED / "card.json").read_text())
    (folder / "card.json").write_text(card if isinstance(card, str) else json.dumps(card))
    if model:
        (folder / "model.keras").symlink_to(WEIGHTS_DIR / SHIPPED / "model.keras")
    return folder


def test_damaged_bundles_are_left_out_and_logged(tmp_path, caplog):
    card = json.loads((WEIGHTS_DIR / SHIPPED / "card.json").read_text())
    bundle_folder(tmp_path, "good")
    bundle_folder(tmp_path, "half-copied", model=False)
    bundle_folder(tmp_path, "ensemble-missing-member", {**card, "members": ["good", "gone"]}, model=False)
    bundle_folder(tmp_path, "ensemble-ok", {**card, "members": ["good"]}, model=False)
    bundle_folder(tmp_path, "broken-card", "{not json")
    bundle_folder(tmp_path, "no-architecture", {k: v for k, v in card.items() if k != "architecture"})
    (tmp_path / "notes").mkdir()  # not a bundle at all: ignored silently
    with caplog.at_level(logging.ERROR, logger="skin_core.bundle"):
        names = [b.name for b in list_bundles(tmp_path)]
    assert names == ["ensemble-ok", "good"]
    logged = " ".join(r.getMessage() for r in caplog.records)
    for damaged in ("half-copied", "ensemble-missing-member", "broken-card", "no-architecture"):
        assert damaged in logged
    assert "notes" not in logged


@pytest.mark.parametrize("name, message", [("half-copied", "model.keras is missing"),
                                           ("broken-card", "not valid JSON"),
                                           ("no-architecture", "lacks architecture")])
def test_opening_a_damaged_bundle_says_what_is_wrong(tmp_path, name, message):
    bundle_folder(tmp_path, name, "{not json" if name == "broken-card" else None, model=name != "half-copied")
    if name == "no-architecture":
        card = json.loads((tmp_path / name / "card.json").read_text())
        del card["architecture"]
        (tmp_path / name / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match=message):
        ModelBundle.open(tmp_path / name)


def test_every_shipped_bundle_opens():
    assert {b.name for b in list_bundles()} == {p.name for p in WEIGHTS_DIR.iterdir() if (p / "card.json").is_file()}

