"""The store's HTML quality report (``brainfm report``), built with :class:`mne.Report`.

:func:`write_report` writes it; :func:`report_facts` gives the same facts as plain data
(``brainfm report --json``).
"""

from brainfm.preprocessing.report.facts import DEFAULT_MAX_RECORDINGS, report_facts
from brainfm.preprocessing.report.html_report import default_report_path, write_report

__all__ = ["DEFAULT_MAX_RECORDINGS", "default_report_path", "report_facts", "write_report"]
