"""``dgmix download``: the DCASE Task 2 data sets from Zenodo, resumable and md5-verified
(:mod:`dgmix.download.records`, :mod:`dgmix.download.fetch`, :mod:`dgmix.download.dataset`)."""

from dgmix.download.dataset import DownloadSummary, download_dataset, select_parts
from dgmix.download.fetch import DownloadError
from dgmix.download.records import RECORDS, ZENODO

__all__ = ["RECORDS", "ZENODO", "DownloadError", "DownloadSummary", "download_dataset", "select_parts"]
