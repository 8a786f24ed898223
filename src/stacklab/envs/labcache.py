"""Parsed labs by content digest: an environment keeps the lab it was launched with."""

from __future__ import annotations

import os

from stacklab.labs.loader import parse_lab
from stacklab.labs.schema import Lab
from stacklab.store.repository import Repository


class LabCache:
    def __init__(self, repo: Repository) -> None:
        self._repo = repo
        self._labs: dict[str, Lab] = {}

    def get(self, digest: str) -> Lab:
        lab = self._labs.get(digest)
        if lab is None:
            record = self._repo.get_lab(digest)
            lab = parse_lab(record.text, record.source_path)
            self._labs[digest] = lab
        return lab

    def lab_dir(self, digest: str) -> str:
        return os.path.dirname(os.path.abspath(self._repo.get_lab(digest).source_path))
