"""stacklab: a lab of their own for every learner of an online course."""

import warnings

# cryptography 51 deprecates DSA, which asyncssh imports; its warning on every command's stderr says
# nothing an operator can act on (stacklab neither makes nor accepts DSA keys).
warnings.filterwarnings("ignore", message="DSA is deprecated", category=UserWarning)

__version__ = "0.1.0"
