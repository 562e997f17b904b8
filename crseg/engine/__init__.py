from . import hooks  # noqa: F401
from . import runner  # noqa: F401
from . import strategies  # noqa: F401
