"""Two Gaussian fields in one `Gaussians`: how co-regularisation fits the one trainer.

The trainer optimises `pipeline.gaussians.params`, one Adam per entry keyed by its name, and hands the same object
to the densification strategy; the viewer, the PLY writer and the exports read `gaussians.means`,
`gaussians.scales`, ... So the pair lives in one ParameterDict: the primary field under the usual names (it is the
scene every other part of splat4d sees, renders, exports and evaluates) and the partner under `PARTNER`-prefixed
names (`partner/means`, ...). Everything keyed by parameter name then works unchanged for both fields: the
optimisers (`SparseOptimConfig` gives the prefixed names the same rates), checkpoints and resumption, `load_params`.
`field(gaussians, prefix)` is a `Gaussians` view of one field that shares the parameter objects, so rendering it
puts gradients on the trained parameters and a strategy editing it edits the trained scene (`store` writes
replaced parameters back).

The alternatives were worse: two `Gaussians` objects would need a trainer that knows about pairs; one set of 2N
Gaussians with a field label would make every render filter by label and leave densification to see one merged
image-plane gradient for two renders.
"""

import torch

from splat4d.gaussians import Gaussians

PARTNER = "partner/"
"""Name prefix of the partner field's parameters."""
PARAMETERS = ("means", "log_scales", "quats", "opacity_logits", "sh0", "shN")
"""The raw parameters of one field."""


def with_partner(primary: Gaussians, partner: Gaussians) -> Gaussians:
    """One `Gaussians` holding both fields (the primary's parameters under their names, the partner's prefixed)."""
    params = {name: primary.params[name].detach() for name in PARAMETERS}
    params |= {PARTNER + name: partner.params[name].detach() for name in PARAMETERS}
    return Gaussians(params)


def prefixes(gaussians: Gaussians) -> list[str]:
    """The fields `gaussians` holds: [""] or ["", PARTNER]."""
    return ["", PARTNER] if PARTNER + "means" in gaussians.params else [""]


def field(gaussians: Gaussians, prefix: str) -> Gaussians:
    """The field with name prefix `prefix`, as a `Gaussians` whose parameters are the very `nn.Parameter`
    objects of `gaussians` (not copies)."""
    view = Gaussians({name: gaussians.params[prefix + name].detach() for name in PARAMETERS})
    for name in PARAMETERS:
        view.params[name] = gaussians.params[prefix + name]
    return view


def store(gaussians: Gaussians, prefix: str, view: Gaussians) -> None:
    """Write the parameters of `view` (a `field` of `gaussians` that a strategy may have replaced) back."""
    for name in PARAMETERS:
        if view.params[name] is not gaussians.params[prefix + name]:
            gaussians.params[prefix + name] = view.params[name]


def field_optimizers(
    optimizers: dict[str, torch.optim.Optimizer], prefix: str
) -> dict[str, torch.optim.Optimizer]:
    """The optimisers of one field, keyed by the plain parameter names."""
    return {name: optimizers[prefix + name] for name in PARAMETERS if prefix + name in optimizers}
