"""Composer: a MoErging composition service.

A registry (`registry`) holds experts, routers (`routers`) decide which experts serve a
prompt, and `ray_cluster` serves them on Ray. This package is the in-process core: the
mixture-of-LoRA host (`composer.host`), the Python API (`Composer`), the demo ocean
(`composer.demo`) and the command line (`composer.cli`). It never imports Ray, and
importing it is cheap: `Composer` loads torch and friends on first access.

    from composer import Composer
    c = Composer()                                   # the registry in $COMPOSER_HOME
    c.generate(["Name the elements: Na Fe"], router="retrieval")
"""

__version__ = "0.1.0"
__all__ = ["Completion", "Composer", "ComposerError"]


def __getattr__(name: str):
    if name in __all__:
        from composer import api

        return getattr(api, name)
    raise AttributeError(f"module 'composer' has no attribute {name!r}")
