"""Import every hastexo unit of an Open edX course export: one lab folder per unit, ready to serve.

An export keeps each unit in `hastexo/<url_name>.xml` (`stackamole/` since the project's 9.0 rename) and the
course assets (Heat templates, environment files, hook scripts) in `static/`. Each unit becomes
`OUT_DIR/<lab id>/` with `lab.yaml`, its Heat template, `unit.xml` (the `<stacklab>` element for the unit)
and `report.txt` (what the import dropped or changed).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from stacklab_xblock.hastexo_import import Assets, ImportResult, import_hastexo
from stacklab_xblock.hastexo_olx import TAGS

ASSET_DIR = "static"


def course_root(path: Path) -> Path:
    """The folder that holds course.xml: the one given, or its `course/` (an unpacked export tarball)."""
    if not (path / "course.xml").is_file() and (path / "course" / "course.xml").is_file():
        return path / "course"
    return path


def course_assets(root: Path) -> Assets:
    """Reads `static/<asset>`; a path reaching outside `static/` reads as absent."""
    static = (root / ASSET_DIR).resolve()

    def read(asset: str) -> str | None:
        relative = asset.strip().removeprefix("/static/").lstrip("/")
        path = (static / relative).resolve()
        if not path.is_relative_to(static) or not path.is_file():
            return None
        return path.read_text()

    return read


def unit_files(root: Path) -> list[Path]:
    """The unit files of both names, in a stable order."""
    return sorted(path for tag in TAGS for path in (root / tag).glob("*.xml"))


def write_lab(result: ImportResult, folder: Path, assets: Assets) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    template = result.lab["openstack"]["template"]
    text = assets(result.template_path) if result.template_path else None
    if text is None:
        result.report.append(
            f"the Heat template {result.template_path!r} is not among the course assets: put it at {template}"
        )
    else:
        (folder / template).write_text(text)
    (folder / "lab.yaml").write_text(result.lab_yaml)
    (folder / "unit.xml").write_text(result.stacklab_olx + "\n")
    (folder / "report.txt").write_text("".join(f"- {line}\n" for line in result.report))


def import_export(export: Path, out_dir: Path) -> list[str]:
    """Import every unit; one line per lab written (or per unit that could not be read)."""
    root = course_root(export)
    assets = course_assets(root)
    files = unit_files(root)
    if not files:
        raise ValueError(f"{export}: no {' or '.join(f'{tag}/*.xml' for tag in TAGS)} in this course export")
    done: list[str] = []
    taken: set[str] = set()
    for path in files:
        try:
            result = import_hastexo(path.read_text(), assets=assets, url_name=path.stem)
        except (ValueError, SyntaxError) as exc:  # ET.ParseError is a SyntaxError
            done.append(f"{path}: not imported: {exc}")
            continue
        if result.lab["id"] in taken:  # two url_names that make the same slug
            unique = f"{result.lab['id'][:31]}-{hashlib.sha256(path.name.encode()).hexdigest()[:8]}"
            result = import_hastexo(path.read_text(), lab_id=unique, assets=assets, url_name=path.stem)
            result.report.append(f"another unit of the export has this unit's lab id: called {unique!r}")
        lab_id = result.lab["id"]
        taken.add(lab_id)
        write_lab(result, out_dir / lab_id, assets)
        done.append(f"{path.relative_to(root)} -> {out_dir / lab_id} ({len(result.report)} notes)")
    return done
