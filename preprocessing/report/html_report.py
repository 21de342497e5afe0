"""Write a store's quality report as one self-contained HTML file, built with :class:`mne.Report`.

The report opens offline: :class:`mne.Report` inlines its scripts and styles, and figures are
embedded as PNG. The summary, failures, warnings, recipes and the per-recording statistics
table cover every recording; detailed sections (PSD per channel type, sensor layout, events
timeline, bad spans, provenance steps, warnings) are written for the recordings chosen by
:func:`~brainfm.preprocessing.report.facts.choose_detailed`.
"""

from __future__ import annotations

import time
from html import escape
from pathlib import Path
from typing import Any

from brainfm._logging import logger, verbose
from brainfm.preprocessing.report import tables
from brainfm.preprocessing.report.facts import DEFAULT_MAX_RECORDINGS, report_facts
from brainfm.store.reader import Store, StoredRecording, open_store

__all__ = ["default_report_path", "write_report"]

_SUMMARY = "Dataset"
_MIN_PSD_SAMPLES = 16


def default_report_path(store: str | Path) -> Path:
    """Where a store's report goes by default: beside the store, ``<name>-report.html``.

    Parameters
    ----------
    store : str | pathlib.Path
        The store folder (``out/store.zarr`` gives ``out/store-report.html``).

    Returns
    -------
    path : pathlib.Path
    """
    store = Path(store)
    name = store.name[: -len(".zarr")] if store.name.endswith(".zarr") and len(store.name) > 5 else store.name
    return store.parent / f"{name}-report.html"


def _add_recording(report: Any, recording: StoredRecording, row: dict[str, Any]) -> None:
    """Add one recording's detailed section."""
    from brainfm.preprocessing.report import figures

    section = recording.id
    report.add_html(tables.recording_overview(row, recording.attrs), "Overview", section=section, tags=("recording",))
    if recording.n_times < _MIN_PSD_SAMPLES:
        report.add_html(tables.alert(
            f"<b>No spectrum</b>: the recording has {recording.n_times} samples, too few for one.", "warning"),
            "Power spectral density", section=section, tags=("psd",))
    else:
        freqs, psd, seconds = figures.sample_psd(recording)
        line = row["line_freq"]
        caption = (
            f"Power spectral density per channel type (log scale) from {seconds:.0f} s of evenly spaced signal chunks. "
            + (f"Dashed lines: power-line frequency {line:g} Hz and harmonics." if line else "Power-line frequency unknown.")
        )
        _add_figure(report, figures.psd_figure(recording, freqs, psd, seconds), "Power spectral density", caption,
                    section, "psd")
    layout = figures.layout_figure(recording)
    missing = row["n_channels"] - row["n_positions"]
    if layout is None:
        report.add_html(tables.alert(
            "<b>No positions</b>: no channel of this recording has a known position (none in the file, "
            "no montage or electrodes file, no template montage matched its names).", "warning"),
            "Sensor layout", section=section, tags=("layout",))
    else:
        bad = "; ".join(f"{n}: {r}" for n, r in row["bad_channels"].items())
        caption = (
            "Sensor positions seen from above in each coordinate frame (x to the right, y to the front). "
            + (f"Bad channels in red: {bad}. " if bad else "No bad channels. ")
            + (f"{missing} channels have no position and are not shown." if missing else "")
        )
        _add_figure(report, layout, "Sensor layout", caption, section, "layout")
    events = recording.events if recording.attrs.get("event_descriptions") else None
    timeline = figures.events_figure(recording) if events is not None else None
    if timeline is None:
        report.add_html(tables.alert("<b>No events</b> are stored for this recording.", "info"),
                        "Events", section=section, tags=("events",))
    else:
        counts = ", ".join(f"{d}: {n}" for d, n in row["event_counts"].items())
        _add_figure(report, timeline, "Events", f"Events over time; counts per description: {counts}. "
                    "Bad spans are shaded red.", section, "events")
        report.add_html(tables.bad_spans_table(events), "Bad spans", section=section, tags=("events",))
    provenance = recording.attrs.get("provenance", {})
    report.add_html(tables.steps_table(provenance), "Provenance", section=section, tags=("provenance",))
    report.add_html(tables.warning_list(row["warnings"]), "Warnings", section=section, tags=("warnings",))


def _add_figure(report: Any, fig: Any, title: str, caption: str, section: str, tag: str) -> None:
    """Embed a figure as PNG: drawn once here (``Report.add_figure`` would draw it twice)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="brainfm-report-") as folder:
        path = Path(folder) / "figure.png"
        fig.savefig(path, format="png", dpi=fig.get_dpi(), facecolor="white")
        report.add_image(path, title, caption=caption, section=section, tags=(tag,))


@verbose
def write_report(
    store: str | Path | Store,
    out: str | Path | None = None,
    *,
    recordings: str | None = None,
    max_recordings: int = DEFAULT_MAX_RECORDINGS,
    progress: bool = False,
    verbose: bool | str | int | None = None,
) -> dict[str, Any]:
    """Write the HTML quality report of a store.

    Parameters
    ----------
    store : str | pathlib.Path | Store
        The store (a path is opened read-only).
    out : str | pathlib.Path | None
        The HTML file; None writes :func:`default_report_path` beside the store.
    recordings : str | None
        Shell-style pattern on recording ids choosing the detailed sections; None: all.
    max_recordings : int
        At most this many detailed sections (default 50; 0 writes the summary only).
    progress : bool
        Show a progress bar on stderr.
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    facts : dict
        :func:`~brainfm.preprocessing.report.facts.report_facts` plus ``html`` (the path
        written), ``seconds`` and ``section_errors`` (recording id -> the error that kept its
        detailed section from being drawn; the report shows it in its place).

    Raises
    ------
    StoreNotFoundError, StoreFormatError
        When ``store`` is not a brainfm store this version reads.
    ConfigError
        When ``recordings`` matches no recording.
    """
    import mne

    started = time.perf_counter()
    the_store = store if isinstance(store, Store) else open_store(store)
    out_path = Path(out) if out is not None else default_report_path(the_store.path)
    if out_path.suffix.lower() not in (".html", ".htm"):
        from brainfm.errors import ConfigError

        raise ConfigError(f"The report file must end in .html, got {str(out_path)!r}.")
    facts = report_facts(the_store, recordings=recordings, max_recordings=max_recordings, progress=progress)
    summary = facts["summary"]
    report = mne.Report(title=f"brainfm report: {the_store.path.name}", image_format="png", verbose="error")
    report.add_html(tables.summary_html(facts), "Summary", section=_SUMMARY, tags=("summary",))
    report.add_html(tables.failures_table(facts), f"Failures ({summary['n_failed']})", section=_SUMMARY, tags=("failures",))
    report.add_html(tables.warnings_table(facts), f"Warnings by kind ({len(facts['warnings'])})", section=_SUMMARY, tags=("warnings",))
    report.add_html(tables.recipes_html(facts), "Recipes", section=_SUMMARY, tags=("recipe",))
    detail_note = (
        f"<p>Detailed sections for {len(facts['detailed'])} of {summary['n_recordings']} recordings"
        + (" (linked); choose others with <code>--recordings PATTERN</code> and <code>--max-recordings N</code>."
           if len(facts["detailed"]) < summary["n_recordings"] else " (linked).")
        + " Click a column header to sort. Red cells: a typical amplitude more than 5x above or below its "
        "median over the store's recordings, or a quarter or more of the channels bad.</p>"
    )
    report.add_html(detail_note + tables.statistics_table(facts), "Per-recording statistics",
                    section=_SUMMARY, tags=("statistics",))
    rows = {row["id"]: row for row in facts["recordings"]}
    facts["section_errors"] = {}
    bar = None
    if progress and facts["detailed"]:
        from tqdm import tqdm

        bar = tqdm(total=len(facts["detailed"]), unit="rec", desc="report", dynamic_ncols=True)
    try:
        for rid in facts["detailed"]:
            if bar is not None:
                bar.set_postfix_str(rid[-40:])
            try:
                _add_recording(report, the_store[rid], rows[rid])
            except Exception as exc:  # noqa: BLE001 - one odd recording must not cost the whole report
                logger.warning("could not draw the report section of %s: %s: %s", rid, type(exc).__name__, exc)
                logger.debug("report section of %s", rid, exc_info=True)
                facts["section_errors"][rid] = f"{type(exc).__name__}: {exc}"
                report.add_html(tables.alert(
                    f"<b>This section could not be drawn</b> ({escape(type(exc).__name__)}: {escape(str(exc))}). "
                    "Please report it with the store's <code>brainfm store info</code> row of this recording.", "danger"),
                    "Error", section=rid, tags=("error",), replace=True)
            if bar is not None:
                bar.update()
    finally:
        if bar is not None:
            bar.close()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    report.save(out_path, open_browser=False, overwrite=True, verbose="error")
    facts["html"] = str(out_path)
    facts["seconds"] = round(time.perf_counter() - started, 3)
    logger.info("wrote %s (%d recordings, %d detailed) in %.1f s", out_path, summary["n_recordings"],
                len(facts["detailed"]), facts["seconds"])
    return facts
