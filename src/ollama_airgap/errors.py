"""One error type for the whole bundler, mapped to an exit code at the entry point."""

from __future__ import annotations


class AirgapError(Exception):
    """A failure the user can act on. Its message is one line that names the thing at fault."""

    exit_code = 1


class SpecError(AirgapError):
    """The bundle spec (or a CLI argument standing in for it) is invalid."""

    exit_code = 2


class UnsupportedModelError(SpecError):
    """A model the spec names cannot be bundled for the pinned ollama: its config ``requires`` a newer ollama, the
    registry refuses that ollama (HTTP 412), it is a cloud model, or a layer has an unknown media type. Exit 2: the
    spec must change (another model, or a newer ``ollama.version``)."""


class VerifyError(AirgapError):
    """Data failed verification: a digest mismatch, a missing, altered or unlisted file, a hostile archive."""

    exit_code = 3


class FetchError(AirgapError):
    """An upstream could not deliver: not found, refused, or still failing after the retries."""

    exit_code = 4


class NotFoundError(FetchError):
    """The upstream answered that the model, tag, image or release does not exist."""


class DiskSpaceError(AirgapError):
    """Not enough free space for the work about to start."""

    exit_code = 5
