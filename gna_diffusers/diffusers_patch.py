"""`pipe.enable_gna(...)` / `pipe.disable_gna()` on every diffusers `DiffusionPipeline`, without importing diffusers.

`import gna_diffusers` stays light (the operator, simulator and recipes need no diffusers), yet the two methods must
be there whichever package the user imports first. `DiffusionPipeline` is defined in `PIPELINE_MODULE`, which
diffusers loads lazily the first time anything touches the class or any pipeline (`import diffusers` alone does not):
if that module is loaded already, the class is patched at once; otherwise a one-shot import hook patches it the moment
the module has run, before any caller can see the class. Either way nothing is imported early, and the methods import
`gna_diffusers.pipeline` only when called. The class is patched with `setattr`, never subclassed or swapped, so
`model_index.json` and `save_pretrained` are unchanged.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Optional, Sequence

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

    from .models.common import GNAState
    from .pipeline import RecipeLike

PIPELINE_MODULE = "diffusers.pipelines.pipeline_utils"


def _enable_gna(self: Any, recipe: RecipeLike) -> GNAState:
    """Run this pipeline's transformer with GNA as the recipe says (a shipped name, a YAML path or a dict)."""
    from .pipeline import enable_gna
    return enable_gna(self, recipe)


def _disable_gna(self: Any) -> None:
    """Restore the pipeline's original attention."""
    from .pipeline import disable_gna
    disable_gna(self)


def patch(pipeline_class: type) -> None:
    """Add `enable_gna` / `disable_gna` to the class (idempotent)."""
    pipeline_class.enable_gna = _enable_gna
    pipeline_class.disable_gna = _disable_gna


class PatchOnImport:
    """A `sys.meta_path` finder (importlib.abc.MetaPathFinder's protocol; the base class is not imported, to keep
    `import gna_diffusers` light): finds `PIPELINE_MODULE` as the finders after it would, and makes its loader patch
    the class once the module has run."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]], target: Any = None) -> Optional[ModuleSpec]:
        if fullname != PIPELINE_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def run_then_patch(module) -> None:
            run(module)
            patch(module.DiffusionPipeline)
            if self in sys.meta_path:
                sys.meta_path.remove(self)

        spec.loader.exec_module = run_then_patch  # this spec's own loader instance; the module keeps its real loader
        return spec


def install() -> None:
    """Patch `DiffusionPipeline` now if diffusers has defined it, else as soon as it does."""
    module = sys.modules.get(PIPELINE_MODULE)
    if module is not None and hasattr(module, "DiffusionPipeline"):
        patch(module.DiffusionPipeline)
    elif not any(isinstance(finder, PatchOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, PatchOnImport())
