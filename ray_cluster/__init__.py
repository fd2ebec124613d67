"""Composer on Ray Serve: deployments, the app builder, the launcher and cluster configs.

The only package (with the CLI) that imports Ray. `app.build(settings)` returns the Serve
application; `launch.serve(...)` is `composer serve`. Cluster files: serve_config.yaml
(`serve run` / `serve deploy`), cluster.yaml (Ray cluster launcher), kuberay.yaml
(KubeRay RayService). See the README's "Serving" and "Multi-node" sections.
"""
