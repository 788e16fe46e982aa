"""The project's own error types: each message is written for the doctor who will read it."""


class SkinCoreError(Exception):
    """Base class: anything the app may show to a user as a plain message."""


class InvalidImage(SkinCoreError):
    """The upload cannot be used as a lesion photo (not an image, corrupt, too small, too big)."""


class InvalidPatient(SkinCoreError):
    """A patient field is out of range or not one of the allowed values."""


class BundleError(SkinCoreError):
    """A model bundle is missing, incomplete or does not match this code."""
