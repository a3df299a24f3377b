"""Errors a user can cause, with messages that name the video, expression, frame or file."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or configuration; the CLI prints the message alone and exits with status 2."""


class InputFileError(UserError):
    """A file is missing, unreadable or corrupt; the message names it."""


class OutputWriteError(UserError):
    """Writing an output failed in the filesystem (full disk, quota, read-only, permission); the
    message names the destination."""
