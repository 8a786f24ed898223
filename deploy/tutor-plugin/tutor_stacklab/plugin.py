"""tutor-stacklab: adds the stacklab service (docker-compose + a Caddy route that carries websockets) and the
stacklab XBlock (OPENEDX_EXTRA_PIP_REQUIREMENTS) to a Tutor deployment."""

from tutor import hooks

hooks.Filters.CONFIG_DEFAULTS.add_items(
    [
        ("STACKLAB_IMAGE", "python:3.11-slim-bookworm"),
        ("STACKLAB_PIP_REQUIREMENT", "stacklab"),
        ("STACKLAB_XBLOCK_REQUIREMENT", "stacklab-xblock"),
        ("STACKLAB_HOST", "labs.{{ LMS_HOST }}"),
        ("STACKLAB_PORT", 8080),
    ]
)
hooks.Filters.CONFIG_UNIQUE.add_items([("STACKLAB_SECRET_KEY", "{{ 32|random_string }}")])


hooks.Filters.ENV_PATCHES.add_items(
    [
        (
            "local-docker-compose-services",
            """stacklab:
  image: {{ STACKLAB_IMAGE }}
  command: >-
    sh -c "pip install -q '{{ STACKLAB_PIP_REQUIREMENT }}'
    && exec stacklab serve --host 0.0.0.0 --port {{ STACKLAB_PORT }}"
  environment:
    STACKLAB_DATA_DIR: /data
    STACKLAB_SECRET_KEY: "{{ STACKLAB_SECRET_KEY }}"
  volumes:
    - ../../data/stacklab:/data
  restart: unless-stopped
""",
        ),
        (
            "caddyfile",
            """
# stacklab: the API, pages and the terminal websocket (Caddy passes Upgrade through by itself)
{{ STACKLAB_HOST }}{$default_site_port} {
    reverse_proxy stacklab:{{ STACKLAB_PORT }} {
        flush_interval -1
        stream_timeout 24h
    }
}
""",
        ),
        # the XBlock, in the openedx image (what OPENEDX_EXTRA_PIP_REQUIREMENTS does for a listed package)
        (
            "openedx-dockerfile-post-python-requirements",
            "RUN --mount=type=cache,target=/openedx/.cache/pip,sharing=shared "
            "pip install '{{ STACKLAB_XBLOCK_REQUIREMENT }}'\n",
        ),
    ]
)
