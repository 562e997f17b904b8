from . import eap, losses, mllms, refiners, segmentors  # noqa: F401
