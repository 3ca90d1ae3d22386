"""Run folders, results files and human-readable summaries."""

from fedsim.report.results import RunFolder, write_json
from fedsim.report.summary import format_online, format_releases, format_summary

__all__ = ["RunFolder", "write_json", "format_summary", "format_releases", "format_online"]
