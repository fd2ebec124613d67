"""Composer: a MoErging composition service.

A registry (`registry`) holds experts, routers (`routers`) decide which experts serve a
prompt, and `ray_cluster` serves them on Ray. This package is the in-process core: the
demo ocean (`composer.demo`), the command line (`composer.cli`) and, later, the
mixture-of-LoRA host and the Python API. It never imports Ray.
"""
__version__ = "0.1.0"
