"""HTML fragments of the report: summary, failures, warnings, statistics and provenance tables.

Every value is escaped. Tables carry bootstrap-table's ``data-toggle="table"`` and
``data-sortable`` attributes: :class:`mne.Report` inlines bootstrap-table, so the columns
sort in the browser with no network access. Numeric cells hold bare numbers (units are in
the headers) so that they sort as numbers.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from brainfm.preprocessing.report.describe import describe_step

__all__ = [
    "alert",
    "amplitude_unit",
    "bad_spans_table",
    "failures_table",
    "recipes_html",
    "recording_overview",
    "statistics_table",
    "steps_table",
    "summary_html",
    "table",
    "warning_list",
    "warnings_table",
]

#: Display factor and unit of amplitudes (channel standard deviations) per SI unit.
AMPLITUDE_UNITS: dict[str, tuple[float, str]] = {"eeg": (1e6, "µV"), "mag": (1e15, "fT"), "grad": (1e13, "fT/cm")}
_VOLT_TYPES = ("seeg", "ecog", "dbs", "eog", "ecg", "emg")


def amplitude_unit(kind: str) -> tuple[float, str]:
    """Display factor and unit for the amplitude of a channel type."""
    if kind in AMPLITUDE_UNITS:
        return AMPLITUDE_UNITS[kind]
    return (1e6, "µV") if kind in _VOLT_TYPES else (1.0, "a.u.")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


def table(
    header: list[str],
    rows: list[list[Any]],
    *,
    sortable: bool = True,
    table_id: str | None = None,
    raw_columns: tuple[int, ...] = (),
    cell_classes: dict[tuple[int, int], str] | None = None,
) -> str:
    """An HTML table; ``raw_columns`` hold HTML already escaped by the caller.

    Parameters
    ----------
    header : list of str
        Column titles.
    rows : list of list
        Cell values (None shows empty; floats with 4 significant digits).
    sortable : bool
        Let bootstrap-table sort the columns.
    table_id : str | None
        The table's ``id`` attribute.
    raw_columns : tuple of int
        Columns whose cells are trusted HTML.
    cell_classes : dict | None
        ``(row, column) -> CSS class`` of single cells (e.g. ``"table-danger"``); a class
        on the cell keeps its value a bare number, so it still sorts as one.

    Returns
    -------
    html : str
    """
    attributes = ' class="table table-sm table-striped table-hover small"'
    if table_id:
        attributes += f' id="{escape(table_id)}"'
    if sortable:
        attributes += ' data-toggle="table" data-sort-stable="true"'
    head = "".join(
        f'<th data-field="c{i}"{" data-sortable=" + chr(34) + "true" + chr(34) if sortable else ""}>{escape(h)}</th>'
        for i, h in enumerate(header)
    )
    classes = cell_classes or {}

    def td(r: int, i: int, value: Any) -> str:
        css = f' class="{escape(classes[(r, i)])}"' if (r, i) in classes else ""
        return f"<td{css}>{value if i in raw_columns else _cell(value)}</td>"

    body = "".join("<tr>" + "".join(td(r, i, v) for i, v in enumerate(row)) + "</tr>" for r, row in enumerate(rows))
    return f"<table{attributes}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def alert(text: str, kind: str = "warning") -> str:
    """A Bootstrap alert box (``kind``: ``warning``, ``danger``, ``info``, ``success``)."""
    return f'<div class="alert alert-{kind}" role="alert">{text}</div>'


def _join_counts(counts: dict[str, Any]) -> str:
    return ", ".join(f"{escape(str(k))}: {escape(str(v))}" for k, v in counts.items())


#: How a subject label was derived (``subject_source``), in words.
_SUBJECT_SOURCES = {
    "bids": "BIDS entities", "filename": "sub-<label> in file names", "pattern": "--pattern",
    "given": "the Python API", "recording": "nothing (no subject label)",
    "unknown": "not recorded (older store)",
}


def _subjects(summary: dict[str, Any]) -> str:
    labelled = summary["subjects"]
    parts = []
    if labelled:
        shown = escape(", ".join(labelled[:12])) + (" ..." if len(labelled) > 12 else "")
        parts.append(f"{len(labelled)} labelled ({shown})")
    if summary["n_without_subject"]:
        parts.append(f"{summary['n_without_subject']} recordings without a subject label, each counted as one")
    sources = summary.get("subject_sources") or {}
    if sources:
        parts.append("derived from " + ", ".join(
            f"{escape(_SUBJECT_SOURCES.get(k, k))}: {n}" for k, n in sources.items()))
    return f"{summary['n_subjects']}" + (f": {'; '.join(parts)}" if parts else "")


def summary_html(facts: dict[str, Any]) -> str:
    """The dataset summary: counts, hours, identities, channel types, rates, line frequency."""
    summary = facts["summary"]
    parts = []
    if summary["n_recordings"] == 0:
        if summary["n_failed"]:
            parts.append(alert(
                f"<b>No recording was stored</b>: all {summary['n_failed']} source files failed. "
                "Their reasons are in the failures table below.", "danger"))
        else:
            parts.append(alert(
                "<b>This store holds no recordings yet.</b> Add some with "
                "<code>brainfm preprocess INPUT_DIR STORE</code>.", "warning"))
    elif summary["n_failed"]:
        parts.append(alert(f"{summary['n_failed']} source files could not be stored: see <b>Failures</b>.", "danger"))
    hours = summary["hours"]
    types = ", ".join(
        f"{escape(t)}: {v['channels']} channels in {v['recordings']} recordings" for t, v in summary["channel_types"].items()
    )
    rows = [
        ["store", escape(facts["store"])],
        ["recordings", f"{summary['n_recordings']} stored, {summary['n_failed']} failed, {summary['n_incomplete']} incomplete"],
        ["duration", f"{hours:.2f} h ({hours * 60:.1f} min)" + (f", {summary['bad_hours'] * 60:.1f} min inside BAD spans" if summary["bad_hours"] else "")],
        ["datasets", _join_counts(summary["datasets"]) or "none"],
        ["subjects", _subjects(summary)],
        ["sessions", escape(", ".join(summary["sessions"])) or "none"],
        ["tasks", escape(", ".join(summary["tasks"])) or "none"],
        ["channel types", types or "none"],
        ["sampling rates (Hz: recordings)", _join_counts(summary["sfreqs"]) or "none"],
        ["power-line frequency (Hz: recordings)", _join_counts(summary["line_freqs"]) or "none"],
        ["bad channels", str(summary["n_bad_channels"])],
        ["flagged recordings", f"{summary['n_flagged']}" + (" (red cells in the per-recording statistics)" if summary["n_flagged"] else "")],
        ["events", str(summary["n_events"])],
        ["format version", escape(str(facts["format_version"]))],
        ["written by", _join_counts(facts.get("written_by") or {})],
    ]
    body = "".join(f"<tr><th scope='row'>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    parts.append(f'<table class="table table-sm small" id="brainfm-summary"><tbody>{body}</tbody></table>')
    return "\n".join(parts)


def failures_table(facts: dict[str, Any]) -> str:
    """Every source file that could not be stored, with its reason; incomplete writes after."""
    failures = facts["failures"]
    parts = []
    if failures:
        parts.append(table(
            ["file", "error type", "reason"],
            [[f["path"], f.get("error_type"), f["error"]] for f in failures],
            table_id="brainfm-failures",
        ))
    else:
        parts.append(alert("No source file failed.", "success"))
    if facts["incomplete"]:
        items = "".join(f"<li>{escape(rid)}</li>" for rid in facts["incomplete"])
        parts.append(alert(
            f"<b>{len(facts['incomplete'])} incomplete recordings</b> (interrupted writes, invisible to "
            f"readers; run <code>brainfm preprocess</code> again to complete them):<ul>{items}</ul>", "warning"))
    return "\n".join(parts)


def warnings_table(facts: dict[str, Any]) -> str:
    """Warnings of all recordings grouped by kind, with a count and one full example."""
    groups = facts["warnings"]
    if not groups:
        return alert("No recording has warnings.", "success")
    rows = []
    for group in groups:
        ids = group["recordings"]
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        rows.append([group["count"], len(ids), group["kind"], group["example"], shown])
    return table(["count", "recordings", "kind", "example", "in"], rows, table_id="brainfm-warnings")


def recipes_html(facts: dict[str, Any]) -> str:
    """The recipes the recordings were made with, each with its resolved configuration."""
    if not facts["recipes"]:
        return alert("No recording, so no recipe.", "info")
    parts = []
    for recipe in facts["recipes"]:
        config = json.dumps(recipe["config"], indent=2, default=str)
        parts.append(
            f"<p><b>{escape(str(recipe['recipe']))}</b> ({escape(str(recipe['origin']))}), "
            f"{recipe['n_recordings']} recordings, config hash <code>{escape(str(recipe['config_hash'])[:16])}</code></p>"
            f"<details><summary>resolved configuration</summary><pre class='small'>{escape(config)}</pre></details>"
        )
    return "\n".join(parts)


def statistics_table(facts: dict[str, Any]) -> str:
    """One sortable row per recording: flags, duration, channels, bad channels, amplitude per type.

    Cells of flagged values (far-off amplitudes, many bad channels) are shaded red; cells do
    not wrap, so each recording is one line (the table scrolls sideways).

    Parameters
    ----------
    facts : dict
        :func:`~brainfm.preprocessing.report.facts.report_facts` of the store.

    Returns
    -------
    html : str
        The table (an alert when the store holds no recording).
    """
    rows_in = facts["recordings"]
    if not rows_in:
        return alert("No recordings.", "info")
    types = list(facts["summary"]["channel_types"])
    header = ["recording", "flags", "dataset", "subject", "subject source", "session", "task", "run", "duration (s)", "sfreq (Hz)",
              "channels", "bad channels", "positions", "events", "bad spans (s)", "warnings"]
    bad_column, first_amplitude = header.index("bad channels"), len(header)
    header += [f"{t} amplitude ({amplitude_unit(t)[1]})" for t in types]
    detailed = set(facts["detailed"])
    rows = []
    classes: dict[tuple[int, int], str] = {}
    for r, row in enumerate(rows_in):
        flags = row.get("flags", [])
        for i, t in enumerate(types):
            if any(flag.startswith(f"{t} amplitude") for flag in flags):
                classes[(r, first_amplitude + i)] = "table-danger"
        if any(flag.endswith("channels bad") for flag in flags):
            classes[(r, bad_column)] = "table-danger"
        name = escape(row["id"])
        link = f'<a href="#brainfm-rec-{name}">{name}</a>' if row["id"] in detailed else name
        values: list[Any] = [link, "; ".join(flags), row["dataset"], row["subject"], row["subject_source"],
                             row["session"], row["task"],
                             row["run"], round(row["duration_s"], 2), row["sfreq"], row["n_channels"],
                             row["n_bad_channels"], row["n_positions"], row["n_events"], round(row["bad_seconds"], 2),
                             len(row["warnings"])]
        for t in types:
            value = row["amplitude"].get(t)
            values.append(None if value is None else float(f"{value * amplitude_unit(t)[0]:.4g}"))
        rows.append(values)
    style = "<style>#brainfm-statistics td, #brainfm-statistics th { white-space: nowrap; }</style>"
    return style + table(header, rows, table_id="brainfm-statistics", raw_columns=(0,), cell_classes=classes)


def recording_overview(row: dict[str, Any], recording_attrs: dict[str, Any]) -> str:
    """Identity, source and channel facts of one recording, and its bad channels with reasons."""
    identity = ", ".join(f"{k}={escape(str(row[k]))}" for k in ("dataset", "subject", "session", "task", "acquisition", "run") if row.get(k) is not None)
    source = recording_attrs.get("source", {})
    reader = recording_attrs.get("provenance", {}).get("reader", {})
    line = "unknown" if row["line_freq"] is None else f"{row['line_freq']:g} Hz"
    items = [
        ["identity", identity],
        ["source", f"{escape(str(source.get('path')))} ({escape(str(source.get('format')))}, read with {escape(str(reader.get('reader')))})"],
        ["duration", f"{row['duration_s']:.2f} s at {row['sfreq']:g} Hz"],
        ["power-line frequency", line],
        ["channels", _join_counts(row["channel_types"])],
        ["positions", f"{row['n_positions']} of {row['n_channels']} channels; frames: {_join_counts(row['frames']) or 'none'}; sources: {_join_counts(row['pos_sources'])}"],
        ["events", f"{row['n_events']}" + (f" ({_join_counts(row['event_counts'])})" if row["event_counts"] else "")],
    ]
    body = "".join(f"<tr><th scope='row'>{escape(k)}</th><td>{v}</td></tr>" for k, v in items)
    html = f'<a id="brainfm-rec-{escape(row["id"])}"></a><table class="table table-sm small"><tbody>{body}</tbody></table>'
    if row["bad_channels"]:
        types = dict(zip(recording_attrs["channels"]["name"], recording_attrs["channels"]["type"], strict=True))
        html += f"<p><b>{row['n_bad_channels']} bad channels</b> (stored, masked by loaders):</p>" + table(
            ["channel", "type", "reason"], [[n, types.get(n), r] for n, r in row["bad_channels"].items()]
        )
    else:
        html += alert("No channel is marked bad.", "success")
    return html


def steps_table(provenance: dict[str, Any]) -> str:
    """The provenance steps in order: what each did, with its parameters folded away."""
    steps = provenance.get("steps") or []
    if not steps:
        return alert("No preprocessing steps recorded.", "info")
    rows = []
    for i, step in enumerate(steps, 1):
        params = json.dumps(step.get("params", {}), default=str)
        rows.append([i, escape(str(step.get("step"))), escape(describe_step(step)),
                     f"<details><summary>params</summary><code class='small'>{escape(params)}</code></details>"])
    head = (f"<p>recipe <b>{escape(str(provenance.get('recipe')))}</b>, {len(steps)} steps"
            + (f", {float(provenance['seconds']):.1f} s" if provenance.get("seconds") is not None else "") + "</p>")
    return head + table(["#", "step", "what it did", "parameters"], rows, sortable=False, raw_columns=(1, 2, 3))


def warning_list(warnings: list[str]) -> str:
    """The reader's and the steps' warnings of one recording, or a note that there are none."""
    if not warnings:
        return alert("No warnings.", "success")
    return "<ul>" + "".join(f"<li>{escape(w)}</li>" for w in warnings) + "</ul>"


def bad_spans_table(events: Any) -> str:
    """The ``BAD`` events of a recording (onset, duration, description)."""
    bad = events[events["description"].astype(str).str.upper().str.startswith("BAD")]
    if bad.empty:
        return alert("No bad spans.", "success")
    return table(["onset (s)", "duration (s)", "description"],
                 [[round(float(r.onset_s), 3), round(float(r.duration_s), 3), r.description] for r in bad.itertuples()])
