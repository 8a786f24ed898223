"""Lab files: the YAML a course author writes, its schema, and a loader that names file, line and field."""

from stacklab.errors import LabError
from stacklab.labs.loader import lab_digest, load_lab, parse_lab
from stacklab.labs.schema import Lab

__all__ = ["Lab", "LabError", "lab_digest", "load_lab", "parse_lab"]
