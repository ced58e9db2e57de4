"""Every SERVE_* variable the manifests set is a real setting of the service with a valid value."""

from __future__ import annotations

import os

import pytest

from app.config import ENV_PREFIX, Settings, unknown_variables
from tests.deploy.manifests import OVERLAYS, Doc, all_containers, config_env, pod_templates


def serve_envs(docs: list[Doc]) -> list[tuple[str, dict[str, str]]]:
    """(container, its SERVE_* variables) for every container that gets any."""
    found = []
    for pod in pod_templates(docs):
        for container in all_containers(pod.spec):
            env = {k: v for k, v in config_env(docs, container).items() if k.startswith(ENV_PREFIX)}
            if env:
                found.append((f"{pod.owner}/{container['name']}", env))
    return found


def settings_from(env: dict[str, str]) -> Settings:
    """Settings built as the service builds them at start-up: from exactly this environment."""
    with pytest.MonkeyPatch.context() as patch:
        for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
            patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        return Settings()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_serve_variable_is_a_valid_setting(rendered: dict[str, list[Doc]], overlay: str) -> None:
    found = serve_envs(rendered[overlay])
    assert any(name.endswith(("/api", "/kserve-container")) for name, _ in found), "no API container found"
    for name, env in found:
        assert unknown_variables(env) == [], f"{overlay} {name}"
        settings = settings_from(env)  # raises, naming the variable, on a bad value
        read = {ENV_PREFIX + field.upper() for field in settings.model_fields_set}
        assert read == set(env), f"{overlay} {name}: not read as settings: {sorted(set(env) - read)}"


def test_a_misspelt_name_or_a_bad_value_fails() -> None:
    assert unknown_variables({"SERVE_MAX_BATCH": "8"}) != []
    with pytest.raises(ValueError, match=r"SERVE_WORKERS|workers"):
        settings_from({"SERVE_WORKERS": "0"})
