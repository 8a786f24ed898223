"""The labs a service offers: every valid lab file in a folder, by lab id."""

from __future__ import annotations

import logging
from pathlib import Path

from stacklab.errors import LabError, NotFound
from stacklab.labs.loader import load_lab
from stacklab.labs.schema import Lab

log = logging.getLogger(__name__)


class LabCatalog:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.paths: dict[str, Path] = {}
        self.labs: dict[str, Lab] = {}
        self.reload()

    def reload(self) -> list[str]:
        """Re-read the folder; invalid files are skipped and their problems returned (and logged)."""
        problems: list[str] = []
        paths, labs = {}, {}
        for path in sorted(self.folder.glob("*.y*ml")):
            try:
                lab = load_lab(path)
            except LabError as exc:
                problems += exc.problems
                continue
            paths[lab.id], labs[lab.id] = path, lab
        self.paths, self.labs = paths, labs
        for problem in problems:
            log.warning("lab skipped: %s", problem)
        return problems

    def path(self, lab_id: str) -> Path:
        if lab_id not in self.paths:
            raise NotFound(f"no lab {lab_id!r} (offered: {', '.join(sorted(self.paths)) or 'none'})")
        return self.paths[lab_id]
