"""Present a `Gaussians` scene to gsplat's strategies under gsplat's parameter names, for one call.

gsplat names the raw log-scales "scales" and the opacity logits "opacities"; splat4d names raw parameters
after what they hold (`log_scales`, `opacity_logits`) and keeps `scales` / `opacities` for the activated values.
`gsplat_view` renames on the way in and writes the (possibly replaced) parameters back on the way out.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from splat4d.gaussians import Gaussians
from splat4d.strategy.base import Optimizers, check_optimizers

GSPLAT_NAMES = {"log_scales": "scales", "opacity_logits": "opacities"}
"""splat4d parameter name → gsplat parameter name, where they differ (means, quats, sh0, shN are shared)."""


def to_gsplat_name(name: str) -> str:
    return GSPLAT_NAMES.get(name, name)


@contextmanager
def gsplat_view(
    gaussians: Gaussians, optimizers: Optimizers
) -> Iterator[tuple[dict[str, torch.nn.Parameter], Optimizers]]:
    """Yield `(params, optimizers)` keyed by gsplat's names for a gsplat strategy call to edit in place.

    On exit the parameters in `params` (gsplat's ops replace them with new `nn.Parameter`s when the number of
    Gaussians changes) are written back into `gaussians.params` under splat4d's names. The optimizer objects are
    the caller's own (gsplat updates their param groups and state in place); after a successful call each must
    point at the parameter now in `gaussians.params`, else RuntimeError.
    """
    ours_by_theirs = {to_gsplat_name(name): name for name in gaussians.params}
    if len(ours_by_theirs) != len(gaussians.params):
        raise ValueError(
            f"gsplat_view: parameter names {sorted(gaussians.params)} collide with gsplat's names"
        )
    params = {theirs: gaussians.params[ours] for theirs, ours in ours_by_theirs.items()}
    gsplat_optimizers = {to_gsplat_name(name): opt for name, opt in optimizers.items()}
    try:
        yield params, gsplat_optimizers
    finally:
        # Written back even when the call raised: gsplat edits each parameter and its optimizer together, so the
        # scene and the optimizers stay consistent with each other.
        for theirs, ours in ours_by_theirs.items():
            if params[theirs] is not gaussians.params[ours]:
                gaussians.params[ours] = params[theirs]
    try:
        check_optimizers(gaussians, optimizers)
    except ValueError as e:
        raise RuntimeError(
            f"gsplat_view: optimizers out of step with the parameters after a gsplat call: {e}"
        ) from e
