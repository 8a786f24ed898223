"""The service's lab folder as course authors see it through the API: what is offered, what its Heat
template gets wrong, and which files could not be read (and why), without the service's own paths."""

from __future__ import annotations

import shutil
from pathlib import Path

from stacklab.labs.catalog import LabCatalog

ROOT = Path(__file__).resolve().parents[2]


def test_offered_labs_carry_their_template_problems_and_unreadable_files_are_named(tmp_path: Path) -> None:
    shutil.copy(ROOT / "examples" / "hello.yaml", tmp_path / "hello.yaml")
    shutil.copytree(ROOT / "examples" / "heat", tmp_path / "heat")  # templates beside, not among, the labs
    lab = (
        (tmp_path / "heat" / "lab.yaml")
        .read_text()
        .replace("template: server.yaml", "template: heat/server.yaml")
    )
    (tmp_path / "heat.yaml").write_text(lab)
    server = tmp_path / "heat" / "server.yaml"
    server.write_text(server.read_text().replace("OS::Nova::Server", "OS::Nova::Servr", 1))
    (tmp_path / "broken.yaml").write_text("schema: 1\nid: broken\ntitle: B\nlogin_user: x\nproviders: []\n")

    catalog = LabCatalog(tmp_path)

    assert sorted(catalog.labs) == ["heat-single", "hello-lab"]
    assert catalog.problems["hello-lab"] == []
    (problem,) = catalog.problems["heat-single"]
    assert problem.startswith("heat/server.yaml:") and "OS::Nova::Servr" in problem, problem
    assert catalog.skipped == {"broken.yaml": ["broken.yaml:5: providers: must list at least one provider"]}
    assert str(tmp_path) not in repr((catalog.problems, catalog.skipped))
