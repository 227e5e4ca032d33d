"""What a run's optimizer holds, for the optimizers the project steps itself: SGD, Adam and AdamW.

Constructing any torch.optim optimizer imports torch's compiler (torch 2.14 wraps `add_param_group` in
`torch._disable_dynamo`, which imports torch._dynamo: about 1.2 s of every process, and no run compiles
anything). The project already steps these three itself (src/stacked_step.py, equal to torch.optim's
step: tests/test_stack.py), for a stack of N runs and for a run alone alike, so a run only needs what
torch's optimizer would hold: one parameter group's hyperparameters and each parameter's state.
`OwnOptimizer` holds them in torch's layout, `state_dict()` included, so checkpoints read and write
exactly as they did when torch.optim held them.

Configs keep naming torch's classes (`_target_: torch.optim.SGD`): the update is that class's.
A run with a learning-rate schedule holds a torch.optim instance instead (torch's schedulers accept
nothing else); it is never stepped either. Any other optimizer (LBFGS, or one a user names by
`_target_`) is torch's own and steps itself.
"""

import copy
from collections.abc import Iterable
from typing import Any

from torch import Tensor

# torch.optim's defaults for each class the project steps, in the order its state_dict lists them.
DEFAULTS: dict[str, dict[str, Any]] = {
    "SGD": {"momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False, "maximize": False,
            "foreach": None, "differentiable": False, "fused": None},
    "Adam": {"betas": (0.9, 0.999), "eps": 1e-08, "weight_decay": 0.0, "amsgrad": False, "maximize": False,
             "foreach": None, "capturable": False, "differentiable": False, "fused": None,
             "decoupled_weight_decay": False},
    "AdamW": {"betas": (0.9, 0.999), "eps": 1e-08, "weight_decay": 0.01, "amsgrad": False,
              "maximize": False, "foreach": None, "capturable": False, "differentiable": False,
              "fused": None, "decoupled_weight_decay": True},
}  # fmt: skip
OWN_STEPS = {f"torch.optim.{name}": name for name in DEFAULTS}  # _target_ -> the update it names


class OwnOptimizer:
    """The hyperparameters (`param_groups[0]`) and per-parameter `state` of an SGD, Adam or AdamW run,
    laid out as torch.optim's; stepped by src/stacked_step.py's StackedOptimizer."""

    def __init__(self, kind: str, params: Iterable[Tensor], **hyperparameters: Any) -> None:
        if kind not in DEFAULTS:
            raise ValueError(f"the project steps {', '.join(DEFAULTS)}, not {kind}")
        unknown = set(hyperparameters) - {"lr", *DEFAULTS[kind]}
        if unknown:
            raise TypeError(f"{kind} has no setting {', '.join(sorted(unknown))}")
        self.kind = kind
        group = {"lr": hyperparameters.pop("lr"), **DEFAULTS[kind], **hyperparameters}
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
        self.param_groups: list[dict[str, Any]] = [{**group, "params": list(params)}]
        self.state: dict[Tensor, dict[str, Tensor]] = {}

    def state_dict(self) -> dict[str, Any]:
        """torch.optim's form: state by parameter index, and the group with `params` as indices."""
        group = self.param_groups[0]
        index = {id(parameter): position for position, parameter in enumerate(group["params"])}
        return {
            "state": {index[id(parameter)]: dict(state) for parameter, state in self.state.items()},
            "param_groups": [
                {
                    **{k: v for k, v in group.items() if k != "params"},
                    "params": list(range(len(group["params"]))),
                }
            ],  # fmt: skip
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """A state_dict of this class or of torch's optimizer of the same kind; its tensors are cast to
        their parameters' dtype and device, as torch.optim casts them."""
        groups = saved["param_groups"]
        parameters = self.param_groups[0]["params"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(parameters):
            raise ValueError("the saved optimizer state is of another model (its parameters do not match)")
        self.param_groups[0].update(copy.deepcopy({k: v for k, v in groups[0].items() if k != "params"}))
        self.state = {}
        for position, state in saved["state"].items():
            parameter = parameters[int(position)]
            self.state[parameter] = {
                key: value if key == "step" else value.to(parameter.device, dtype=parameter.dtype)
                for key, value in state.items()
            }


def optimizer_kind(optimizer: Any) -> str | None:
    """`SGD`, `Adam` or `AdamW` for an optimizer whose update the project computes itself (its own
    holder, or torch's class of that name when a schedule needs one), else None."""
    if isinstance(optimizer, OwnOptimizer):
        return optimizer.kind
    if type(optimizer).__module__.startswith("torch.optim") and type(optimizer).__name__ in DEFAULTS:
        group = optimizer.param_groups[0]
        unsupported = group.get("maximize") or group.get("amsgrad") or group.get("dampening", 0) != 0
        return None if unsupported else type(optimizer).__name__
    return None
