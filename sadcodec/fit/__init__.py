"""The encoder's optimisation: sites fitted to an image under a byte budget.

Modules: ``config`` (FitConfig), ``state`` (Fitter: device state, one Adam step),
``paths`` (the CPU and GPU ways of running a step, chosen once), ``densify`` (the site
count policy), ``rate`` (the budget and the final rate fit), ``schedule`` (the loop),
``hooks`` (instrumentation for benchmarks).

The names below are imported on first use, so that ``sadcodec.fit.config`` (read by
``sadcodec.settings``) can be imported without Taichi and the kernels.
"""

from importlib import import_module

_WHERE = {
    "FitConfig": "config",
    "Geom": "config",
    "FitHooks": "hooks",
    "MapSnapshot": "hooks",
    "RateTarget": "rate",
    "FitResult": "schedule",
    "Schedule": "schedule",
    "fit_to_budget": "schedule",
    "Fitter": "state",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
