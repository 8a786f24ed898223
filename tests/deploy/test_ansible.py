"""deploy/ansible: every playbook passes ansible-playbook --syntax-check, the tree passes ansible-lint."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ANSIBLE = Path(__file__).resolve().parents[2] / "deploy/ansible"
PLAYBOOKS = sorted(ANSIBLE.glob("*.yml"))


def test_the_playbooks_and_roles_exist() -> None:
    assert {p.name for p in PLAYBOOKS} >= {"single-node.yml", "cluster.yml"}
    for role in ("stacklab", "course_from_git"):
        assert (ANSIBLE / "roles" / role / "tasks/main.yml").exists()


@pytest.mark.deploy
@pytest.mark.parametrize(
    "playbook", [p for p in PLAYBOOKS if p.name != "requirements.yml"], ids=lambda p: p.name
)
def test_syntax_check(playbook: Path, deploy_env: dict[str, str]) -> None:
    result = subprocess.run(
        ["ansible-playbook", "-i", "localhost,", "--syntax-check", playbook.name],
        cwd=ANSIBLE,
        env=deploy_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.deploy
def test_ansible_lint_production_profile(deploy_env: dict[str, str]) -> None:
    result = subprocess.run(
        ["ansible-lint", "--profile", "production", "--offline", "--nocolor"],
        cwd=ANSIBLE,
        env=deploy_env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "Profile 'production' was required, and it passed" in result.stdout + result.stderr


def test_the_readme_maps_every_original_variable_and_tutor_setting() -> None:
    """README's table names the issue's edx/configuration variables and each Tutor setting we set."""
    import yaml

    readme = (ANSIBLE.parent / "README.md").read_text()
    table = readme.split("## edx/configuration variables", 1)[1].split("\n## ", 1)[0]
    for old in (
        "MONGO_CLUSTERED",
        "MARIADB_CLUSTERED",
        "EDXAPP_MYSQL_HOST",
        "EDXAPP_MONGO_HOSTS",
        "FORUM_MONGO_HOSTS",
    ):
        assert f"`{old}" in table, old
    settings = yaml.safe_load((ANSIBLE / "group_vars/all.yml").read_text())["tutor_backend_settings"]
    missing = [key for key in settings if f"`{key}" not in table and f"{key}:" not in table]
    assert missing == [], f"Tutor settings without a row in the README table: {missing}"


def test_the_pinned_meilisearch_version_has_a_checksum() -> None:
    import yaml

    defaults = yaml.safe_load((ANSIBLE / "roles/meilisearch/defaults/main.yml").read_text())
    checksum = defaults["meilisearch_checksums"][defaults["meilisearch_version"]]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", checksum), checksum
    assert defaults["meilisearch_allow_unverified_download"] is False


@pytest.mark.deploy
def test_the_meilisearch_role_refuses_a_download_it_cannot_verify(
    deploy_env: dict[str, str], tmp_path: Path
) -> None:
    """A version without a checksum stops the role at its first check, before it touches the host."""
    (tmp_path / "play.yml").write_text(
        "- name: Meilisearch\n  hosts: localhost\n  connection: local\n  gather_facts: false\n"
        "  roles:\n    - role: meilisearch\n"
    )
    result = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            "localhost,",
            "-e",
            "meilisearch_version=9.9.9 meilisearch_master_key=a-master-key-for-the-test",
            "play.yml",
        ],
        cwd=tmp_path,
        env={**deploy_env, "ANSIBLE_ROLES_PATH": str(ANSIBLE / "roles")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0, result.stdout
    assert "no checksum for Meilisearch 9.9.9" in result.stdout, result.stdout[-3000:]
    assert "Create the meilisearch user" not in result.stdout
