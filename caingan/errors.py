"""One exception family, so the app and CLIs can show any expected failure as a message, not a crash."""


class CainGANError(Exception):
    """Base of every error a user can cause (bad file, no face, wrong checkpoint...)."""


class ImageLoadError(CainGANError):
    """An image could not be read: missing, corrupt, truncated, unsupported."""


class NoFaceError(CainGANError):
    """No face was found where one was needed."""


class VideoLoadError(CainGANError):
    """A video could not be opened or decoded."""


class CameraError(CainGANError):
    """A camera is absent or stopped delivering frames."""


class CheckpointError(CainGANError):
    """A checkpoint is missing, truncated, of the wrong kind or does not match the model."""


class ExportError(CainGANError):
    """Writing output failed (unwritable folder, full disk...)."""


class PersonalizeError(CainGANError, ValueError):
    """Bad personalization settings or inputs, or a personalization made for another model."""
