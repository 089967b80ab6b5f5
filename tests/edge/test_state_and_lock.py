"""Device state on disk, the lock, the outbox, the schedule lines, credentials."""
import os
import stat

import pytest

from edge import schedule
from edge.lock import LockBusy, exclusive_lock
from edge.outbox import Outbox, Report
from edge.registry_client import Credentials
from edge.state import DeviceState


def _download(state: DeviceState, text: str):
    d = state.new_download_dir()
    (d / "model.tflite").write_text(text)
    return d


def test_install_swaps_current_keeps_previous_and_prunes_older(tmp_path):
    state = DeviceState(tmp_path)
    for version in ("1", "2", "3"):
        state.install(_download(state, version), "m", version, version * 64)
    assert (state.current().version, state.previous().version) == ("3", "2")
    assert (tmp_path / "current" / "model.tflite").read_text() == "3"
    assert (tmp_path / "previous" / "model.tflite").read_text() == "2"
    assert len(list((tmp_path / "models" / "m").iterdir())) == 2
    assert not state.current().benchmarked
    state.mark_benchmarked()
    assert state.current().benchmarked


def test_lock_is_exclusive_and_released(tmp_path):
    path = tmp_path / "lock"
    with exclusive_lock(path):
        with pytest.raises(LockBusy, match="another puller"):
            with exclusive_lock(path, wait_s=0.3):
                pass
    with exclusive_lock(path):
        pass


class _DownThenUp:
    def __init__(self):
        self.sent, self.up = [], False

    def log_batch(self, run_id, metrics, tags, timestamp_ms):
        from edge.registry_client import ServerUnreachable

        if not self.up:
            raise ServerUnreachable("down")
        self.sent.append((run_id, metrics, tags, timestamp_ms))


def test_outbox_keeps_reports_until_sent_in_order(tmp_path):
    box, server = Outbox(tmp_path), _DownThenUp()
    for i in range(3):
        box.put(Report(f"run{i}", {"m": float(i)}, {"t": "x"}, 1000 + i))
    assert box.flush(server) == 0 and len(box.pending()) == 3
    server.up = True
    assert box.flush(server) == 3 and box.pending() == []
    assert [s[0] for s in server.sent] == ["run0", "run1", "run2"]
    assert server.sent[0][3] == 1000, "the original measurement time is kept"


def test_cron_line_quotes_the_command():
    line = schedule.cron_line(["/opt/edgeq bin/edgeq-pull", "--model", "m"], 15)
    assert line.startswith("*/15 * * * * '/opt/edgeq bin/edgeq-pull' --model m")
    assert schedule.cron_line(["p"], 120).startswith("0 */2 * * * p")
    with pytest.raises(ValueError):
        schedule.cron_line(["p"], 90)


def test_systemd_units_run_the_command_on_a_timer():
    units = schedule.systemd_units(["/usr/bin/edgeq-pull", "--model", "m"], 30)
    assert "ExecStart=/usr/bin/edgeq-pull --model m" in units["edgeq-pull.service"]
    assert "OnUnitActiveSec=30min" in units["edgeq-pull.timer"]


def test_credentials_file_must_be_private(tmp_path):
    path = tmp_path / "creds"
    path.write_text("MLFLOW_TRACKING_USERNAME=pi\nMLFLOW_TRACKING_PASSWORD=s3cret\n")
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        Credentials.from_file(path)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    creds = Credentials.from_file(path)
    assert (creds.username, creds.password) == ("pi", "s3cret")
    assert "s3cret" not in repr(creds)
