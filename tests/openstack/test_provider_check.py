"""`stacklab provider check NAME --lab LAB` against the real Heat of the harness, and the shipped catalogue
of Heat resource types compared with what the harness's Heat gives."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from tests.openstack.conftest import LAB_DIR

from stacklab.cli import main

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.openstack

LAB = """\
schema: 1
id: heat-check
title: provider check
login_user: learner
providers:
  - {{name: heat, type: openstack, cloud: heatbox}}
openstack:
  template: {template}
  parameters: {parameters}
  nodes: {nodes}
"""
BAD_ATTRIBUTE = """\
heat_template_version: 2018-08-31
parameters:
  run: {type: string}
  public_key: {type: string}
resources:
  password:
    type: OS::Heat::RandomString
    properties: {length: 16}
outputs:
  public_ip: {value: 127.0.0.1}
  secret: {value: {get_attr: [password, no_such_attribute]}}
"""
SERVER = """\
heat_template_version: 2018-08-31
parameters:
  run: {type: string}
  public_key: {type: string}
  flavor: {type: string, default: m1.small}
  image: {type: string, default: debian-12}
resources:
  server:
    type: OS::Nova::Server
    properties:
      flavor: {get_param: flavor}
      image: {get_param: image}
      networks: [{network: public}]
outputs:
  public_ip: {value: {get_attr: [server, networks, public, 0]}}
"""


def check(
    lab_dir: Path, template: str, parameters: str = "{}", nodes: str = "[main]"
) -> tuple[int, list[str]]:
    (lab_dir / "lab.yaml").write_text(LAB.format(template=template, parameters=parameters, nodes=nodes))
    args = [
        "--data-dir",
        str(lab_dir / "data"),
        "provider",
        "check",
        "heat",
        "--lab",
        str(lab_dir / "lab.yaml"),
    ]
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output.splitlines()


@pytest.fixture
def lab_dir(tmp_path: Path, heat_clouds: Path) -> Path:
    """The openstack suite's lab templates (a nested template, a get_file), copied to the test's folder."""
    shutil.copytree(LAB_DIR, tmp_path / "lab")
    return tmp_path / "lab"


def test_a_valid_lab_is_accepted_by_heat_with_its_files_and_parameters(lab_dir: Path) -> None:
    code, output = check(lab_dir, "stack.yaml", "{greeting: hi}", "[main, worker1]")
    assert code == 0, output
    # Heat saw stack.yaml's parameters; its nested worker.yaml and files/motd.txt went with it
    declared = len(yaml.safe_load((lab_dir / "stack.yaml").read_text())["parameters"])
    assert f"ok    template: Heat accepts it ({declared} parameters, 2 files)" in output, output


def test_an_invalid_template_is_refused_with_heats_reason(lab_dir: Path) -> None:
    (lab_dir / "bad.yaml").write_text(BAD_ATTRIBUTE)
    code, output = check(lab_dir, "bad.yaml")
    assert code == 1
    template = [line for line in output if " template: " in line]
    assert len(template) == 1 and template[0].startswith("FAIL  template: "), output
    assert "Heat refused the request (400)" in template[0]
    assert "The Referenced Attribute (password no_such_attribute) is incorrect" in template[0]


def test_what_the_cloud_lacks_is_named(lab_dir: Path) -> None:
    """The harness has Keystone and Heat only: no Nova, Glance or Neutron holds the flavor, image, network."""
    (lab_dir / "server.yaml").write_text(SERVER)
    code, output = check(lab_dir, "server.yaml", "{flavor: m1.tiny}")
    assert code == 1
    assert "FAIL  flavor m1.tiny: the cloud has no compute service, so it has no flavor 'm1.tiny'" in output
    assert "FAIL  image debian-12: the cloud has no image service, so it has no image 'debian-12'" in output
    assert "FAIL  network public: the cloud has no network service, so it has no network 'public'" in output
    template = next(line for line in output if " template: " in line)
    assert template.startswith("FAIL  template: ") and "Service nova is not available" in template, output


def test_the_shipped_catalogue_is_what_this_heat_gives(heat_clouds: Path) -> None:
    """scripts/heat-catalogue regenerates it from the harness's Heat (its own Python) and compares."""
    result = subprocess.run(
        [
            str(ROOT / "scripts/heat-catalogue"),
            "--check",
            str(ROOT / "src/stacklab/labs/heat_catalogue.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "up to date with Heat" in result.stdout
