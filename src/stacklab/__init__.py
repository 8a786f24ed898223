"""stacklab: a lab of their own for every learner of an online course."""

__version__ = "0.1.0"
