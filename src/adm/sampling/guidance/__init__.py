"""Guidance: classifier, classifier-free and autoguidance as wrappers around the model function.

``protocol`` (the two kinds of wrapper and how they compose), ``classifier`` (the original's
classifier guidance, exact on its chains), ``free`` (classifier-free guidance, autoguidance),
``registry`` (methods by name, torch-free, entry points ``adm.guidance``). Names are imported on
first use (``adm.core.lazy``).
"""

from adm.core.lazy import lazy_exports

_SUBMODULE = {
    "CondFn": "classifier",
    "ClassifierGuidance": "classifier",
    "classifier_grad_fn": "classifier",
    "condition_mean": "classifier",
    "condition_score": "classifier",
    "guidance_gradient": "classifier",
    "Autoguidance": "free",
    "ClassifierFree": "free",
    "Guidance": "protocol",
    "GuidanceContext": "protocol",
    "Guided": "protocol",
    "OutputGuidance": "protocol",
    "ScoreGuidance": "protocol",
    "GuidanceSpec": "registry",
    "available_guidance": "registry",
    "get_guidance": "registry",
}

__all__ = sorted(_SUBMODULE)
__getattr__, __dir__ = lazy_exports(__name__, _SUBMODULE)
