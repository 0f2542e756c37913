"""``relkd report``: one Markdown + HTML report with figures over run, ablation and study folders.

See docs/report.md for what each section shows and where its data comes from.
"""

from relkd.report.build_report import build_report
from relkd.report.run_collection import collect_runs
from relkd.report.run_record import RunRecord, load_run

__all__ = ["RunRecord", "build_report", "collect_runs", "load_run"]
