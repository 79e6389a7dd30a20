"""The errors mmsent means: input it cannot use or a state the user can fix, each message naming what.

`mmsent.cli.main` prints any MmsentError as one line and exits 2. Anything else that escapes is a
bug (in mmsent or below it) and keeps its traceback (exit 1): a ValueError from inside torch is not
mistaken for a bad setting.
"""

from __future__ import annotations


class MmsentError(Exception):
    """Base of the errors we mean; subclasses keep the built-in base they had (ValueError, RuntimeError)."""


class SettingsError(MmsentError, ValueError):
    """A setting, option or environment variable that cannot be used as given."""


class ServiceError(MmsentError, RuntimeError):
    """AWS (S3, SageMaker) refused or failed a request; the message carries its answer."""
