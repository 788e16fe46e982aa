"""Bad uploads and bad fields through the app; nothing of the patient's is written or logged."""

import logging
import os

import pytest
from image_cases import CASES
from streamlit.testing.v1 import AppTest
from test_app import APP, TIMEOUT

import skin_core as sc


@pytest.mark.parametrize("name", list(CASES))
def test_upload_case_in_the_app(name):
    make, expected = CASES[name]
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.file_uploader[0].set_value((f"{name}.jpg", make(), "image/jpeg")).run()
    assert not at.exception, [e.value for e in at.exception]
    if expected is None:
        assert not at.error, [e.value for e in at.error]
        at.form_submit_button[0].click().run()
        assert not at.exception
        # A drawn test pattern may rightly be called "not a dermoscopy photo" or referred; nothing else may go wrong.
        assert all("does not look like a dermoscopy photo" in e.value or sc.referral.REFERRAL_MESSAGE in e.value
                   for e in at.error), [e.value for e in at.error]
        assert abs(at.session_state["result"]["prediction"].probabilities.sum() - 1) < 1e-6
    else:
        assert any(expected in e.value for e in at.error), [e.value for e in at.error]
        assert at.form_submit_button[0].disabled


def snapshot(*folders):
    return {os.path.join(root, f) for folder in folders for root, _, files in os.walk(folder) for f in files}


def test_no_upload_or_patient_data_is_written_or_logged(tmp_path, monkeypatch, caplog, capfd):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir(), work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    repo = os.path.dirname(APP)
    before = snapshot(home, work, repo)
    caplog.set_level(logging.DEBUG)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.file_uploader[0].set_value(("patient-4711.jpg", CASES["jpeg"][0](), "image/jpeg")).run()
    at.number_input(key="age").set_value(87)
    at.selectbox(key="site").set_value("scalp")
    at.form_submit_button[0].click().run()
    assert not at.exception and at.session_state["result"]["patient"].age == 87
    assert at.session_state["result"]["patient"].site == "scalp"
    after = snapshot(home, work, repo)
    new = {f for f in after - before if "__pycache__" not in f}
    assert not new, f"files written: {sorted(new)}"
    captured = capfd.readouterr()
    logs = caplog.text + captured.out + captured.err
    for secret in ("patient-4711", "scalp", "87"):
        assert secret not in logs, f"{secret!r} appeared in the logs"
