"""The cluster files in ray_cluster/ are valid for the tools that read them and name what exists."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2] / "ray_cluster"


def serve_configs() -> dict[str, dict]:
    kuberay = yaml.safe_load((ROOT / "kuberay.yaml").read_text())
    assert kuberay["kind"] == "RayService"
    return {
        "serve_config.yaml": yaml.safe_load((ROOT / "serve_config.yaml").read_text()),
        "kuberay.yaml": yaml.safe_load(kuberay["spec"]["serveConfigV2"]),
    }


@pytest.mark.parametrize("name", ["serve_config.yaml", "kuberay.yaml"])
def test_serve_configs_validate_and_name_real_deployments(name):
    from ray.serve.schema import ServeDeploySchema

    from ray_cluster import deployments

    config = ServeDeploySchema.model_validate(serve_configs()[name])
    (app,) = config.applications
    module, _, attr = app.import_path.partition(":")
    assert module == "ray_cluster.app" and callable(getattr(__import__(module, fromlist=[attr]), attr))
    known = {"Ingress", "RouterDeployment", "ModelDeployment", "EvalDeployment"}
    assert {d.name for d in app.deployments if not d.name.startswith("Host:")} <= known
    assert all(hasattr(deployments, n) for n in known)
    # every arg is a setting with a valid value (the builder would refuse anything else at deploy time)
    from dataclasses import fields

    from composer.settings import Settings

    args = dict(app.args)
    assert set(args) <= {f.name for f in fields(Settings)}, set(args) - {f.name for f in fields(Settings)}
    args["allowed_roots"] = tuple(args.get("allowed_roots", "").split(":"))
    Settings(**args)


def test_launcher_config_parses():
    cfg = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    assert cfg["head_node_type"] in cfg["available_node_types"] and cfg["setup_commands"]


def test_config_builder_refuses_to_run_open(monkeypatch, tmp_path):
    from ray_cluster.app import app_builder

    monkeypatch.delenv("COMPOSER_API_KEY", raising=False)
    with pytest.raises(ValueError, match="COMPOSER_API_KEY"):
        app_builder({"home": str(tmp_path)})


def test_cuda_settings_give_each_model_replica_its_share_of_a_gpu(tmp_path):
    from composer.settings import Settings
    from ray_cluster.app import GPU_SHARE, _on_gpu, gpu_shares
    from ray_cluster.deployments import HostDeployment

    assert gpu_shares(Settings(home=str(tmp_path), device="cpu")) == {}
    shares = gpu_shares(Settings(home=str(tmp_path), device="cuda"))
    assert shares == GPU_SHARE and sum(shares.values()) <= 1  # one device holds a host and its companions
    host = _on_gpu(HostDeployment, shares["host"], name="Host:b")
    assert host.ray_actor_options["num_gpus"] == 0.5
    assert host.ray_actor_options["num_cpus"] == HostDeployment.ray_actor_options["num_cpus"]  # kept
    assert _on_gpu(HostDeployment, None) is HostDeployment


def test_host_replicas_and_custom_resources_come_from_the_settings(tmp_path, monkeypatch):
    from composer.settings import Settings
    from ray_cluster.app import _on_gpu
    from ray_cluster.deployments import HostDeployment

    monkeypatch.setenv("COMPOSER_HOST_RESOURCES", "composer_host=1, fast=0.5,gpu_node")
    monkeypatch.setenv("COMPOSER_HOST_REPLICAS", "3")
    s = Settings.from_env(home=str(tmp_path))
    assert s.host_replicas == 3 and s.resources() == {"composer_host": 1.0, "fast": 0.5, "gpu_node": 1.0}
    host = _on_gpu(HostDeployment, None, s.resources(), name="Host:b", num_replicas=s.host_replicas)
    assert host.num_replicas == 3 and host.ray_actor_options["resources"] == s.resources()
    assert host.ray_actor_options["num_cpus"] == HostDeployment.ray_actor_options["num_cpus"]
    for bad in ("=1", "x=many", "x=0"):
        monkeypatch.setenv("COMPOSER_HOST_RESOURCES", bad)
        with pytest.raises(ValueError, match="COMPOSER_HOST_RESOURCES"):
            Settings.from_env(home=str(tmp_path))
    monkeypatch.setenv("COMPOSER_HOST_RESOURCES", "")
    monkeypatch.setenv("COMPOSER_HOST_REPLICAS", "0")
    with pytest.raises(ValueError, match="COMPOSER_HOST_REPLICAS"):
        Settings.from_env(home=str(tmp_path))
