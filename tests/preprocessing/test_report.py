"""The store's HTML quality report: facts, bad input, and the page as a browser shows it.

The browser tests drive headless Chromium through the DevTools protocol over a pipe
(``--remote-debugging-pipe``: JSON messages separated by NUL bytes on file descriptors 3
and 4), so they need no Python package beyond the standard library; they skip with a
reason where Debian's ``chromium`` is not installed.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from brainfm.data.channels import empty_channel_table
from brainfm.data.recording import Identity, Recording
from brainfm.errors import ConfigError, StoreNotFoundError
from brainfm.preprocessing.report import report_facts, write_report
from brainfm.preprocessing.report.describe import describe_step
from brainfm.preprocessing.report.facts import choose_detailed, warning_kind
from brainfm.store.reader import open_store
from brainfm.store.writer import StoreWriter

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("headless Chromium not installed (Debian: apt-get install chromium); the browser checks need it")


def _above_four(fd: int) -> int:
    import fcntl

    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


class Browser:
    """A headless Chromium page driven through the DevTools protocol over a pipe."""

    def __init__(self, executable: str, profile: Path) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # the child's ends must not be 3 or 4 themselves, or the redirections below clash
        to_child_r, from_child_w = (_above_four(fd) for fd in (to_child_r, from_child_w))
        # Chromium reads commands on fd 3 and writes replies on fd 4.
        script = f'exec "$@" 3<&{to_child_r} 4>&{from_child_w} {to_child_r}<&- {from_child_w}>&-'
        self.process = subprocess.Popen(
            ["bash", "-c", script, "bash", executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
             "--remote-debugging-pipe", "about:blank"],
            pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=True)

    def _read_message(self, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                return None
            data = os.read(self._from_child, 1 << 20)
            if not data:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += data
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict[str, Any] | None = None, *, session: bool = False, timeout: float = 60) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(max(0.0, deadline - time.monotonic()))
            if reply is None:
                raise TimeoutError(f"no reply to {method} in {timeout} s")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            event = self._read_message(max(0.0, deadline - time.monotonic()))
            if event is None:
                raise TimeoutError(f"{method} did not arrive in {timeout} s")
            self.events.append(event)

    def settle(self, seconds: float) -> None:
        """Collect events for a while (late scripts, late requests)."""
        deadline = time.monotonic() + seconds
        while (event := self._read_message(max(0.0, deadline - time.monotonic()))) is not None:
            self.events.append(event)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"}, session=True)["data"])

    def errors(self) -> list[str]:
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails'].get('text')} {params['exceptionDetails'].get('exception', {}).get('description', '')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(f"console.{params['type']}: {[a.get('value', a.get('description')) for a in params.get('args', [])]}")
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        return found

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_child)
        os.close(self._from_child)


def open_in_browser(html: Path, profile: Path, executable: str | None = None) -> Browser:
    browser = Browser(executable or _chromium(), profile)
    try:
        browser.call("Page.navigate", {"url": html.resolve().as_uri()}, session=True)
        browser.wait_for("Page.loadEventFired", timeout=120)
        browser.settle(1.5)
    except BaseException:
        browser.close()
        raise
    return browser


def _not_blank(png: bytes) -> tuple[float, float]:
    """Share of non-white pixels and the pixel standard deviation of a PNG."""
    from matplotlib.image import imread

    pixels = imread(io.BytesIO(png), format="png")[..., :3]
    return float((pixels.min(axis=-1) < 0.95).mean()), float(pixels.std())


# --- a real multi-modality store (EEG, MEG and iEEG, two broken files) -----------------


@pytest.fixture(scope="module")
def real_store(shared_data, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("report") / "mixed"
    folder.mkdir()
    for relative in ("eeg/eegmmidb/S001R03.edf", "meg/fif/test_move_anon_erm_raw.fif",
                     "ieeg/fif/sample_ecog_ieeg.fif", "corrupt/not_really.edf", "corrupt/truncated_S001R05.edf"):
        shutil.copy(shared_data / relative, folder)
    shutil.copytree(shared_data / "ieeg" / "persyst", folder / "persyst")
    store = folder.parent / "mixed.zarr"
    from brainfm.preprocessing.run import preprocess

    summary = preprocess(folder, store)
    assert len(summary.processed) == 4 and len(summary.failed) == 2, summary.table()
    return store


@pytest.fixture(scope="module")
def real_report(real_store) -> tuple[Path, dict[str, Any]]:
    out = real_store.parent / "mixed-report.html"
    facts = write_report(real_store, out)
    return out, facts


@pytest.mark.slow
def test_real_report_has_every_section_and_every_failure(real_store, real_report):
    out, facts = real_report
    html = out.read_text()
    store = open_store(real_store)
    assert facts["detailed"] == list(store)  # 4 recordings, under the default limit
    for rid in store:  # a section per recording, with its anchor, PSD and provenance
        assert f'id="brainfm-rec-{rid}"' in html
    assert html.count("Power spectral density") >= len(store)
    types = {t for rid in store for t in store[rid].channels["type"]}
    assert {"eeg", "mag", "grad", "ecog", "seeg"} <= types
    failures = html[html.index('id="brainfm-failures"'):]
    failures = failures[: failures.index("</table>")]
    assert len(store.failed) == 2
    for failure in store.failed:  # every failed file, with its reason
        assert escape(failure["path"]) in failures and escape(failure["error"]) in failures
    # provenance in words, and the reader's warnings
    assert "notch skipped: power-line frequency unknown" in html  # the ECoG FIF has no line frequency
    assert "Internal Active Shielding" in html  # MaxShield warning of the MEG file
    # the Persyst file has events; the MEG and iEEG FIFs have none and say so
    assert html.count("No events</b> are stored") == 2
    assert "seizure" in html


@pytest.mark.slow
def test_real_report_json_gives_the_summary_facts(real_store, real_report, tmp_path):
    out, facts = real_report
    result = subprocess.run(
        [sys.executable, "-m", "brainfm.cli.main", "report", str(real_store), str(tmp_path / "r.html"),
         "--json", "--max-recordings", "1"],
        capture_output=True, text=True, cwd=tempfile.gettempdir(), timeout=600,
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["html"] == str(tmp_path / "r.html") and (tmp_path / "r.html").is_file()
    assert payload["summary"] == facts["summary"]
    assert payload["failures"] == facts["failures"] and payload["recordings"] == facts["recordings"]
    assert len(payload["detailed"]) == 1
    summary = payload["summary"]
    store = open_store(real_store)
    assert summary["n_recordings"] == len(store) == 4 and summary["n_failed"] == 2
    expected_hours = sum(store[rid].duration_s for rid in store) / 3600
    assert summary["hours"] == pytest.approx(expected_hours)
    assert summary["channel_types"]["grad"] == {"channels": 204, "recordings": 1}
    assert summary["subject_sources"] == {"filename": 1, "recording": 3}  # only the Persyst name has sub-pt1
    # what the JSON says is what the page says
    html = out.read_text()
    table = html[html.index('id="brainfm-summary"'):]
    assert f"{summary['n_recordings']} stored, {summary['n_failed']} failed" in table
    assert f"{summary['hours']:.2f} h" in table
    assert "grad: 204 channels in 1 recordings" in table
    assert "derived from sub-&lt;label&gt; in file names: 1, nothing (no subject label): 3" in table


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium executable (the test skips, before building anything, where there is none)."""
    return _chromium()


@pytest.mark.slow
def test_real_report_loads_offline_in_chromium(chromium, real_report, tmp_path):
    out, facts = real_report
    browser = open_in_browser(out, tmp_path / "profile", chromium)
    try:
        assert browser.errors() == []
        outside = [u for u in browser.requests() if not u.startswith(("file:", "data:", "about:", "blob:"))]
        assert outside == [], f"the report fetched from the network: {outside}"
        # bootstrap-table ran (it wraps every data-toggle table) and sorts the statistics table
        assert browser.evaluate("document.querySelectorAll('.bootstrap-table').length") >= 3
        durations = browser.evaluate(
            """(() => {
                const table = document.getElementById('brainfm-statistics');
                const index = [...table.querySelectorAll('thead th')].findIndex(th => th.innerText.startsWith('duration'));
                table.querySelectorAll('thead th')[index].querySelector('.sortable').click();
                return [...table.querySelectorAll('tbody tr')].map(tr => parseFloat(tr.children[index].innerText));
            })()"""
        )
        assert len(durations) == 4 and durations == sorted(durations)
        # the MEG file's EEG is ~300x quieter than the others' (its units warning): still red after sorting
        flagged = browser.evaluate(
            "[...document.querySelectorAll('#brainfm-statistics td.table-danger')].map(td => td.closest('tr').innerText)"
        )
        assert len(flagged) == 1 and "test_move_anon_erm_raw" in flagged[0]
        png = browser.screenshot()
    finally:
        browser.close()
    (Path(os.environ.get("BRAINFM_SCREENSHOT_DIR", tmp_path)) / "report-first-screen.png").write_bytes(png)
    inked, spread = _not_blank(png)
    assert inked > 0.02 and spread > 0.05, f"the first screen looks blank ({inked:.1%} non-white pixels)"


# --- synthetic stores: bad input, limits, bad channels --------------------------------


def _recording(dataset: str, subject: str, *, n_channels: int = 4, seconds: float = 4.0, sfreq: float = 100.0,
               positions: bool = True, events: bool = True, bad: dict[str, str] | None = None,
               warnings: list[str] | None = None, seed: int = 0, scale: float = 1.0) -> Recording:
    rng = np.random.default_rng(seed)
    n = int(seconds * sfreq)
    t = np.arange(n) / sfreq
    signal = ((rng.standard_normal((n_channels, n)) * 1e-5 + 3e-6 * np.sin(2 * np.pi * 50 * t)) * scale).astype(np.float32)
    names = ["Fz", "Cz", "Pz", "Oz", "C3", "C4", "F3", "F4"][:n_channels]
    table = empty_channel_table(names, ["eeg"] * n_channels)
    if positions:
        angles = np.linspace(0, 2 * np.pi, n_channels, endpoint=False)
        table["x"], table["y"], table["z"] = 0.08 * np.cos(angles), 0.08 * np.sin(angles), 0.05
        table["frame"] = "head"
        table["pos_source"] = "measured"
    else:
        table["pos_source"] = "none"
    for name, reason in (bad or {}).items():
        row = names.index(name)
        table.loc[row, "status"] = "bad"
        table.loc[row, "status_reason"] = reason
    event_table = pd.DataFrame(
        {"onset_s": [0.5, 1.5, 2.0], "duration_s": [0.0, 0.0, 1.0], "description": ["stim", "stim", "BAD_muscle"]}
        if events else {"onset_s": [], "duration_s": [], "description": []}
    )
    return Recording(
        signal=signal, sfreq=sfreq, identity=Identity(dataset=dataset, subject=subject), channels=table,
        events=event_table, line_freq=50.0,
        source={"recording_id": f"{dataset}_sub-{subject}", "path": f"/data/{dataset}/{subject}.edf", "format": "edf"},
        provenance={"recipe": "default", "recipe_origin": "packaged:default", "config_hash": "abc", "recipe_config": {},
                    "steps": [{"step": "notch", "params": {}, "effect": {"skip": True, "reason": "power-line frequency unknown"}}],
                    "warnings": warnings or []},
    )


def test_not_a_store_is_a_clear_error(tmp_path):
    with pytest.raises(StoreNotFoundError, match="not a brainfm store"):
        write_report(tmp_path / "missing.zarr")
    result = subprocess.run([sys.executable, "-m", "brainfm.cli.main", "report", str(tmp_path / "missing.zarr")],
                            capture_output=True, text=True, cwd=tempfile.gettempdir(), timeout=300)
    assert result.returncode == 2 and "not a brainfm store" in result.stderr and "Traceback" not in result.stderr


def test_report_command_rejects_unusable_arguments(tmp_path):
    writer = StoreWriter(tmp_path / "s.zarr")
    writer.write(_recording("d", "01"))
    for args, message in [
        (["--recordings", "x*"], "matches none of the 1 recordings"),
        (["--max-recordings", "-1"], "--max-recordings must be 0 or more"),
        ([str(tmp_path / "r.pdf")], "must end in .html"),
    ]:
        result = subprocess.run([sys.executable, "-m", "brainfm.cli.main", "report", str(tmp_path / "s.zarr"), *args],
                                capture_output=True, text=True, cwd=tempfile.gettempdir(), timeout=300)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_empty_store_says_so(tmp_path):
    StoreWriter(tmp_path / "empty.zarr")
    facts = write_report(tmp_path / "empty.zarr")
    html = Path(facts["html"]).read_text()
    assert facts["html"] == str(tmp_path / "empty-report.html")
    assert facts["summary"]["n_recordings"] == 0 and facts["detailed"] == []
    assert "This store holds no recordings yet" in html


def test_store_whose_recordings_all_failed_shows_the_failures(tmp_path):
    writer = StoreWriter(tmp_path / "s.zarr")
    writer.record_failure("/data/a.edf", "a.edf is truncated: header says 10 s, file holds 4 s.")
    writer.record_failure("/data/b.vhdr", "b.vhdr: the data file b.eeg is missing.")
    facts = write_report(tmp_path / "s.zarr", tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert "all 2 source files failed" in html
    failures = html[html.index('id="brainfm-failures"'):]
    assert "/data/a.edf" in failures and "b.eeg is missing" in failures
    assert [f["path"] for f in facts["failures"]] == ["/data/a.edf", "/data/b.vhdr"]


def test_recording_without_positions_or_events_is_marked(tmp_path):
    writer = StoreWriter(tmp_path / "s.zarr")
    writer.write(_recording("d", "01", positions=False, events=False))
    html = Path(write_report(tmp_path / "s.zarr")["html"]).read_text()
    assert "No positions</b>" in html and "No events</b> are stored" in html
    assert "notch skipped: power-line frequency unknown" in html


def test_bad_channels_carry_their_reason(tmp_path):
    writer = StoreWriter(tmp_path / "s.zarr")
    writer.write(_recording("d", "01", bad={"Cz": "flat", "Oz": "noisy: robust z 7.1"}))
    facts = write_report(tmp_path / "s.zarr")
    row = facts["recordings"][0]
    assert row["bad_channels"] == {"Cz": "flat", "Oz": "noisy: robust z 7.1"}
    # amplitude per type uses the good channels only
    stats = open_store(tmp_path / "s.zarr")["d_sub-01"].stats["std"]
    assert row["amplitude"]["eeg"] == pytest.approx(float(np.median(stats[["Fz", "Pz"]])))
    html = Path(facts["html"]).read_text()
    assert "Bad channels in red: Cz: flat; Oz: noisy: robust z 7.1" in html  # the layout's caption
    assert row["n_bad_spans"] == 1 and row["bad_seconds"] == pytest.approx(1.0)


def test_detailed_sections_are_limited_and_shared_between_datasets(tmp_path):
    writer = StoreWriter(tmp_path / "s.zarr")
    for i in range(6):
        writer.write(_recording("aaa", f"{i:02d}", seed=i))
    writer.write(_recording("zzz", "01"))
    store = open_store(tmp_path / "s.zarr")
    assert choose_detailed(store, None, 3) == ["aaa_sub-00", "aaa_sub-01", "zzz_sub-01"]
    assert choose_detailed(store, "aaa_*", 2) == ["aaa_sub-00", "aaa_sub-01"]
    assert choose_detailed(store, None, 0) == []
    with pytest.raises(ConfigError, match="matches none of the 7 recordings"):
        choose_detailed(store, "bbb*", 5)
    with pytest.raises(ValueError, match="max_recordings"):
        choose_detailed(store, None, -1)
    facts = write_report(store, tmp_path / "r.html", max_recordings=2)
    html = (tmp_path / "r.html").read_text()
    assert len(facts["recordings"]) == 7  # the summary covers every recording
    assert html.count('id="brainfm-rec-') == 2
    assert "Detailed sections for 2 of 7 recordings" in html


def test_outliers_are_flagged_and_shaded(tmp_path):
    writer = StoreWriter(tmp_path / "s.zarr")
    for i in range(4):
        writer.write(_recording("d", f"{i:02d}", seed=i))
    writer.write(_recording("d", "big", scale=100.0))  # volts stored as if they were centivolts
    writer.write(_recording("d", "bad", bad={"Fz": "flat", "Cz": "flat"}))
    facts = write_report(tmp_path / "s.zarr", max_recordings=0)
    flags = {row["id"]: row["flags"] for row in facts["recordings"]}
    (flag,) = flags["d_sub-big"]
    ratio = float(re.fullmatch(r"eeg amplitude (\S+)x median", flag).group(1))
    assert 80 < ratio < 120  # 100x the others' noise, against the median of the store's six
    assert flags["d_sub-bad"] == ["2 of 4 channels bad"]
    assert all(flags[f"d_sub-{i:02d}"] == [] for i in range(4))
    assert facts["summary"]["n_flagged"] == 2
    html = Path(facts["html"]).read_text()
    table = html[html.index('id="brainfm-statistics"'):]
    table = table[: table.index("</table>")]
    assert table.count('class="table-danger"') == 2
    big_row = next(r for r in table.split("<tr>") if "d_sub-big" in r)
    assert '<td class="table-danger">' in big_row and flag in big_row


def test_report_file_must_be_html(tmp_path):
    StoreWriter(tmp_path / "s.zarr")
    with pytest.raises(ConfigError, match=r"must end in \.html"):
        write_report(tmp_path / "s.zarr", tmp_path / "report.pdf")


def test_warnings_are_grouped_by_kind(tmp_path):
    writer = StoreWriter(tmp_path / "s.zarr")
    writer.write(_recording("d", "01", warnings=[
        "64 of 64 EEG channels without measured positions got template positions from MNE's 'colin27_1005' montage (pos_source='template')."]))
    writer.write(_recording("d", "02", warnings=[
        "23 of 81 EEG channels without measured positions got template positions from MNE's 'standard_1005' montage (pos_source='template').",
        "Internal Active Shielding data (MaxShield): not MaxFiltered. Run MaxFilter."]))
    groups = report_facts(open_store(tmp_path / "s.zarr"))["warnings"]
    assert [(g["count"], g["recordings"]) for g in groups] == [(2, ["d_sub-01", "d_sub-02"]), (1, ["d_sub-02"])]
    assert warning_kind("units: a.fif: eeg amplitude 1.03e-07 V lies outside [2e-07, 0.0005] V; it looks small") == \
        warning_kind("units: sub-02/b.edf: eeg amplitude 9e-09 V lies outside [2e-07, 5e-4] V; it looks small")


@pytest.mark.parametrize(
    "step,sentence",
    [
        ({"step": "notch", "effect": {"skip": True, "reason": "power-line frequency unknown"}},
         "notch skipped: power-line frequency unknown"),
        ({"step": "notch", "effect": {"freqs": [60.0, 120.0], "line_freq": 60.0}}, "notch at 60, 120 Hz (line 60 Hz)"),
        ({"step": "resample", "effect": {"from_sfreq": 160.0, "to_sfreq": 256.0, "method": "polyphase"}},
         "resampled 160 Hz -> 256 Hz (polyphase)"),
        ({"step": "bandpass", "effect": {"l_freq": 0.1, "h_freq": None}}, "high-pass at 0.1 Hz"),
        ({"step": "bad_channels", "effect": {"marked_bad": {"T7": "flat"}, "types": ["eeg"]}},
         "marked bad: T7 (flat); types checked: eeg"),
        ({"step": "reference", "effect": {"eeg": {"scheme": "average", "n_averaged": 63, "left_out_bad": ["T7"]}}},
         "eeg: average of 63 channels (bad left out: T7)"),
        ({"step": "a_future_step", "effect": {"kept": 3}}, "kept: 3"),
        ({"step": "notch", "effect": {"unexpected": 1}}, "unexpected: 1"),
    ],
)
def test_provenance_steps_in_words(step, sentence):
    assert describe_step(step) == sentence


def test_report_module_does_not_import_torch():
    code = "import sys, brainfm.preprocessing.report, brainfm.cli.report_cmd; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tempfile.gettempdir(), timeout=300)


def test_warning_kind_masks_what_varies():
    assert warning_kind("notch skipped: the power-line frequency is unknown and was not detected") == \
        "notch skipped: the power-line frequency is unknown and was not detected"
    assert re.fullmatch(r"N EEG channels .*", warning_kind("58 EEG channels have no position: ['POL E'] ..."))


@pytest.mark.slow
def test_preprocess_report_writes_the_report_beside_the_store(shared_data, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("test_raw_chanloc.set", "test_raw_chanloc.fdt"):
        shutil.copy(shared_data / "eeg" / "eeglab" / name, folder)
    shutil.copy(shared_data / "corrupt" / "not_really.edf", folder)
    store = tmp_path / "s.zarr"
    result = subprocess.run(
        [sys.executable, "-m", "brainfm.cli.main", "preprocess", str(folder), str(store), "--report", "--json", "-q"],
        capture_output=True, text=True, cwd=tempfile.gettempdir(), timeout=600,
    )
    assert result.returncode == 1, result.stderr  # one file failed
    payload = json.loads(result.stdout)
    assert payload["report"] == str(tmp_path / "s-report.html")
    html = Path(payload["report"]).read_text()
    assert "in_test_raw_chanloc" in html and str(folder / "not_really.edf") in html


def test_psd_reads_a_few_chunks_and_matches_the_whole_recording(tmp_path):
    from scipy.signal import welch

    from brainfm.preprocessing.report.figures import sample_psd

    writer = StoreWriter(tmp_path / "s.zarr")
    writer.write(_recording("d", "01", seconds=120.0, sfreq=256.0), chunk_mib=0.004)  # small chunks
    recording = open_store(tmp_path / "s.zarr")["d_sub-01"]
    signal = recording.signal
    chunk = int(signal.chunks[1])
    assert recording.n_times // chunk >= 30

    class Counting:
        def __init__(self, array):
            self.array, self.chunks, self.reads = array, array.chunks, []

        def __getitem__(self, key):
            self.reads.append(key[1])
            return self.array[key]

    counting = Counting(signal)
    recording._signal = counting
    freqs, psd, seconds = sample_psd(recording, max_chunks=6)
    assert len(counting.reads) == 6 and seconds == pytest.approx(6 * chunk / 256.0)
    assert all(s.start % chunk == 0 and s.stop - s.start == chunk for s in counting.reads)  # whole chunks only
    full_freqs, full = welch(np.asarray(signal[:], dtype=np.float64), fs=256.0, nperseg=min(512, chunk), axis=-1)
    np.testing.assert_allclose(freqs, full_freqs)
    band = (freqs > 5) & (freqs < 120)
    ratio = psd[:, band].mean(axis=1) / full[:, band].mean(axis=1)
    np.testing.assert_allclose(ratio, 1.0, rtol=0.25)  # stationary noise: 6 chunks estimate the whole
    peak = np.argmin(np.abs(freqs - 50.0))
    assert (psd[:, peak] > 2.5 * np.median(psd[:, band], axis=1)).all()  # the 50 Hz line stands out


def test_a_section_that_cannot_be_drawn_is_marked_and_the_rest_is_written(tmp_path, monkeypatch):
    from brainfm.preprocessing.report import figures

    writer = StoreWriter(tmp_path / "s.zarr")
    writer.write(_recording("d", "01"))
    writer.write(_recording("d", "02", seconds=0.1))  # 10 samples: too few for a spectrum
    original = figures.layout_figure

    def layout_or_fail(recording):
        if recording.id == "d_sub-01":
            raise ValueError("odd channel table")
        return original(recording)

    monkeypatch.setattr(figures, "layout_figure", layout_or_fail)
    facts = write_report(tmp_path / "s.zarr")
    assert facts["section_errors"] == {"d_sub-01": "ValueError: odd channel table"}
    html = Path(facts["html"]).read_text()
    assert "This section could not be drawn</b> (ValueError: odd channel table)" in html
    assert "the recording has 10 samples, too few for one" in html
    assert html.count('id="brainfm-rec-') == 2
