"""The labs a service offers: every valid lab file in a folder, by lab id."""

from __future__ import annotations

import logging
from pathlib import Path

from stacklab.errors import LabError, NotFound
from stacklab.labs.lab_templates import lab_template_problems
from stacklab.labs.loader import load_lab
from stacklab.labs.schema import Lab

log = logging.getLogger(__name__)


class LabCatalog:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.paths: dict[str, Path] = {}
        self.labs: dict[str, Lab] = {}
        self.problems: dict[str, list[str]] = {}
        """Per offered lab, what `stacklab lab validate` finds in its Heat template (authors see it in
        Studio); a lab with such problems is still offered, as it may work on a newer Heat."""
        self.skipped: dict[str, list[str]] = {}
        """Per lab file that could not be read, its problems (FILE:LINE: field: problem)."""
        self.reload()

    def reload(self) -> list[str]:
        """Re-read the folder; invalid files are skipped and their problems returned (and logged)."""
        paths, labs, problems, skipped = {}, {}, {}, {}
        for path in sorted(self.folder.glob("*.y*ml")):
            try:
                lab = load_lab(path)
            except LabError as exc:
                skipped[path.name] = [self._relative(p) for p in exc.problems]
                continue
            paths[lab.id], labs[lab.id] = path, lab
            problems[lab.id] = [self._relative(p) for p in lab_template_problems(lab, str(path))]
        self.paths, self.labs, self.problems, self.skipped = paths, labs, problems, skipped
        every = [problem for found in skipped.values() for problem in found]
        for problem in every:
            log.warning("lab skipped: %s", problem)
        return every

    def _relative(self, problem: str) -> str:
        """The problem with the service's own folder left out (it is shown outside the service)."""
        return problem.replace(f"{self.folder.resolve()}/", "").replace(f"{self.folder}/", "")

    def path(self, lab_id: str) -> Path:
        if lab_id not in self.paths:
            raise NotFound(f"no lab {lab_id!r} (offered: {', '.join(sorted(self.paths)) or 'none'})")
        return self.paths[lab_id]
