"""fastdraft-dag: FastDraft speculative-decoding drafts as a Dagster graph of assets."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fastdraft-dag")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"
