"""tutor-stacklab: with the plugin enabled, `tutor config save` renders the stacklab service, its Caddy route
and the XBlock install into Tutor's generated environment."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

PLUGIN = Path(__file__).resolve().parents[2] / "deploy/tutor-plugin"


def run(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    result = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.deploy
def test_tutor_config_save_renders_the_stacklab_service(tutor_venv: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TUTOR_ROOT": str(tmp_path / "root"),
        "TUTOR_PLUGINS_ROOT": str(tmp_path / "plugins"),
    }
    env.pop("VIRTUAL_ENV", None)
    bin_ = tutor_venv / "bin"
    run([str(bin_ / "pip"), "install", "-q", "--no-deps", "--force-reinstall", str(PLUGIN)], env)
    run([str(bin_ / "tutor"), "plugins", "enable", "stacklab"], env)
    run(
        [
            str(bin_ / "tutor"),
            "config",
            "save",
            "--set",
            "LMS_HOST=learn.example.org",
            "--set",
            "STACKLAB_PIP_REQUIREMENT=git+https://git.example.org/stacklab.git@main",
        ],
        env,
    )
    root = tmp_path / "root"
    compose = yaml.safe_load((root / "env/local/docker-compose.yml").read_text())
    service = compose["services"]["stacklab"]
    assert "stacklab serve --host 0.0.0.0 --port 8080" in service["command"]
    assert "git+https://git.example.org/stacklab.git@main" in service["command"]
    assert service["environment"]["STACKLAB_SECRET_KEY"]
    caddyfile = (root / "env/apps/caddy/Caddyfile").read_text()
    assert "labs.learn.example.org{$default_site_port} {" in caddyfile
    assert "reverse_proxy stacklab:8080" in caddyfile
    dockerfile = (root / "env/build/openedx/Dockerfile").read_text()
    assert "pip install 'stacklab-xblock'" in dockerfile
    config = yaml.safe_load((root / "config.yml").read_text())
    assert "stacklab" in config["PLUGINS"]


RENDER = """\
- name: Render what the cluster gives an app server
  hosts: app_servers
  gather_facts: false
  connection: local
  vars:
    stacklab_proxy_port: 80
    stacklab_server_name: "_"
    stacklab_listen_port: 8080
    stacklab_lms_upstream: "http://127.0.0.1:8081"
  tasks:
    - name: Tutor settings and the nginx route
      ansible.builtin.copy:
        content: "{{ {'tutor': tutor_settings, 'host': stacklab_meilisearch_host} | to_json }}"
        dest: "{{ out }}/vars.json"
        mode: "0644"
    - name: The stacklab role's nginx site
      ansible.builtin.template:
        src: "{{ roles_dir }}/stacklab/templates/nginx-stacklab.conf.j2"
        dest: "{{ out }}/nginx.conf"
        mode: "0644"
"""


@pytest.mark.deploy
def test_the_cluster_routes_tutors_public_meilisearch_host(
    tutor_venv: Path, deploy_env: dict[str, str], tmp_path: Path
) -> None:
    """Tutor (RUN_MEILISEARCH false) gives browsers MEILISEARCH_PUBLIC_URL and routes it nowhere; the app
    servers' nginx, from the same group_vars, serves that host name and passes it to Meilisearch's node."""
    ansible = PLUGIN.parent / "ansible"
    (tmp_path / "group_vars").symlink_to(ansible / "group_vars")
    (tmp_path / "inventory.ini").write_text(
        "[backend_servers]\n10.0.0.11\n10.0.0.12\n10.0.0.13\n[app_servers]\n10.0.0.21\n"
        "[all:vars]\nstacklab_site=learn.example.org\n"
        "ansible_python_interpreter={{ ansible_playbook_python }}\n"
    )
    (tmp_path / "render.yml").write_text(RENDER)
    run(
        [
            "ansible-playbook",
            "-i",
            "inventory.ini",
            "-e",
            f"out={tmp_path} roles_dir={ansible / 'roles'}",
            "render.yml",
        ],
        {**deploy_env, "PWD": str(tmp_path)},
        cwd=tmp_path,
    )
    rendered = json.loads((tmp_path / "vars.json").read_text())
    nginx = (tmp_path / "nginx.conf").read_text()

    env = {
        **os.environ,
        "TUTOR_ROOT": str(tmp_path / "root"),
        "TUTOR_PLUGINS_ROOT": str(tmp_path / "plugins"),
    }
    env.pop("VIRTUAL_ENV", None)
    settings = [f"--set={key}={value}" for key, value in rendered["tutor"].items()]
    run([str(tutor_venv / "bin/tutor"), "config", "save", *settings], env)
    lms = (tmp_path / "root/env/apps/openedx/settings/lms/production.py").read_text()
    public = re.search(r'^MEILISEARCH_PUBLIC_URL = "(.*)"$', lms, re.M)
    internal = re.search(r'^MEILISEARCH_URL = "(.*)"$', lms, re.M)
    assert public and internal, lms[:2000]
    assert public[1] == "http://meilisearch.learn.example.org"
    assert internal[1] == "http://10.0.0.11:7700"
    caddyfile = (tmp_path / "root/env/apps/caddy/Caddyfile").read_text()
    assert "meilisearch" not in caddyfile  # RUN_MEILISEARCH: false, Caddy has no route for it

    host = public[1].split("://", 1)[1]
    assert rendered["host"] == host
    server = re.search(rf"server_name {re.escape(host)};(.*?)\n}}", nginx, re.S)
    assert server, nginx
    assert f"proxy_pass {internal[1]};" in server[1], nginx
