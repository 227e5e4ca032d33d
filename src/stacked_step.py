"""The arithmetic of a stack's step (src.trainer.train_stacked_epochs): members' parameters held as one
tensor per name, members first; one forward pass over all of them; and the project's optimizers (SGD,
Adam, AdamW) stepping every member with its own hyperparameters.

Each operation is torch.optim's single-tensor step (or nn.Linear's forward) applied to rows instead of
tensors, so a member's numbers equal its solo run's up to float re-association. One step costs a few
tensor operations whatever the number of members: no per-member Python, no vmap, no parameter groups.
"""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from src.models import MLP, LogisticRegression
from src.optimizers import optimizer_kind

StackedForward = Callable[[dict[str, Tensor], Tensor], Tensor]


def stacked_parameters(models: list[nn.Module]) -> dict[str, Tensor]:
    """The members' parameters as fresh leaf tensors (members, *shape), one per name."""
    named = [dict(model.named_parameters()) for model in models]
    with torch.no_grad():
        return {name: torch.stack([p[name] for p in named]).requires_grad_() for name in named[0]}


def write_back(params: dict[str, Tensor], models: list[nn.Module], rows: list[int] | None = None) -> None:
    """Each member's row of the stacked parameters (those of `rows`, or all) into its own model."""
    with torch.no_grad():
        for row in range(len(models)) if rows is None else rows:
            for name, parameter in models[row].named_parameters():
                parameter.copy_(params[name][row])


def stacked_forward(template: nn.Module) -> StackedForward:
    """f(params, inputs) -> logits (members, N, outputs) for stacks of `template`'s kind. Inputs are one
    batch for every member (N, features), or one per cohort (cohorts, N, features), where the members
    (rows of params) are in cohort order, each cohort the same number of them."""
    if isinstance(template, LogisticRegression | MLP):
        return lambda params, inputs: _forward(template, params, inputs, "")
    # Another model: torch.func does the stacking, at a higher cost per step.
    call = torch.func.functional_call

    def vmapped(params: dict[str, Tensor], inputs: Tensor) -> Tensor:
        members = next(iter(params.values())).shape[0]
        if inputs.ndim == 3:  # each member its cohort's batch
            inputs = inputs.repeat_interleave(members // inputs.shape[0], dim=0)
        in_dims = (0, 0 if inputs.ndim == 3 else None)
        return torch.func.vmap(lambda p, x: call(template, p, (x,)), in_dims=in_dims)(params, inputs)

    return vmapped


def _forward(module: nn.Module, params: dict[str, Tensor], inputs: Tensor, prefix: str) -> Tensor:
    if isinstance(module, LogisticRegression):
        return _forward(module.linear, params, inputs, prefix + "linear.")
    if isinstance(module, MLP):
        return _forward(module.layers, params, inputs, prefix + "layers.")
    if isinstance(module, nn.Sequential):
        for name, child in module.named_children():
            inputs = _forward(child, params, inputs, f"{prefix}{name}.")
        return inputs
    if isinstance(module, nn.ReLU):
        return torch.relu(inputs)
    assert isinstance(module, nn.Linear), f"no stacked forward for {type(module).__name__}"
    weight, bias = params[prefix + "weight"], params[prefix + "bias"]  # (M, out, in), (M, out)
    members, outputs, features = weight.shape
    if inputs.ndim == 2:  # one batch for all: a single matrix product against every member's weights
        logits = nn.functional.linear(inputs, weight.reshape(members * outputs, features))
        return logits.view(-1, members, outputs).transpose(0, 1) + bias.unsqueeze(1)
    # One batch per cohort (or per member, after a hidden layer): a batched product, cohort by cohort.
    cohorts, count = inputs.shape[0], inputs.shape[1]
    grouped = weight.reshape(cohorts, (members // cohorts) * outputs, features)
    logits = torch.bmm(inputs, grouped.transpose(1, 2)).view(cohorts, count, members // cohorts, outputs)
    return logits.transpose(1, 2).reshape(members, count, outputs) + bias.unsqueeze(1)


class StackedOptimizer:
    """SGD, Adam or AdamW over stacked parameters, each member (row) with the hyperparameters and state
    of its own solo optimizer. `export` writes a member's state back in its solo optimizer's form."""

    def __init__(self, params: dict[str, Tensor], optimizers: list[Any]) -> None:
        self.params = params
        kinds = {optimizer_kind(optimizer) for optimizer in optimizers}
        if len(kinds) != 1 or None in kinds:
            raise ValueError(f"a stack steps SGD, Adam or AdamW, one kind for all members, not {kinds}")
        self.kind = kinds.pop()
        groups = [optimizer.param_groups[0] for optimizer in optimizers]
        first = groups[0]
        self.decoupled = self.kind == "AdamW" or bool(first.get("decoupled_weight_decay"))
        self.eps = first.get("eps", 0.0)
        self.device = next(iter(params.values())).device
        self._on_device: dict[tuple[str, str], Tensor] = {}

        # On the host in double precision, as torch.optim computes with Python floats (and as every
        # device can hold it); each step uses them cast to the parameters' dtype, on their device.
        def column(values: list[float]) -> Tensor:
            return torch.tensor(values, dtype=torch.float64)

        self.hyper = {"lr": column([g["lr"] for g in groups]),
                      "weight_decay": column([g["weight_decay"] for g in groups])}  # fmt: skip
        if self.kind == "SGD":
            self.hyper["momentum"] = column([g["momentum"] for g in groups])
            self.hyper["nesterov"] = column([float(g["nesterov"]) for g in groups])
        else:
            self.hyper["beta1"] = column([g["betas"][0] for g in groups])
            self.hyper["beta2"] = column([g["betas"][1] for g in groups])
        self.state: dict[str, dict[str, Tensor]] = {name: {} for name in params}
        self.step_count = 0.0
        self._import(optimizers)

    def _import(self, optimizers: list[Any]) -> None:
        """The members' restored state (a resumed run's moments), stacked."""
        names = list(self.params)
        per_member = [[optimizer.state.get(p, {}) for p in optimizer.param_groups[0]["params"]]
                      for optimizer in optimizers]  # fmt: skip
        for index, name in enumerate(names):
            states = [member[index] for member in per_member]
            keys = {"momentum_buffer"} if self.kind == "SGD" else {"exp_avg", "exp_avg_sq"}
            for key in keys:
                present = [state.get(key) for state in states]
                if all(value is None for value in present):
                    continue
                zeros = torch.zeros_like(self.params[name][0])
                self.state[name][key] = torch.stack([zeros if v is None else v for v in present])
            steps = {float(state["step"]) for state in states if "step" in state}
            if steps:
                assert len(steps) == 1, "members of one stack have taken the same steps"
                self.step_count = steps.pop()

    def set_lrs(self, lrs: list[float]) -> None:
        """Each member's learning rate for the next steps (its schedule's, when it has one)."""
        if lrs != self.hyper["lr"].tolist():
            self.hyper["lr"] = torch.tensor(lrs, dtype=torch.float64)
            self._on_device.clear()

    def _shaped(self, name: str, key: str, dtype: torch.dtype) -> Tensor:
        """A hyperparameter per member, shaped to broadcast against parameter `name` (members first)."""
        if (name, key) not in self._on_device:
            self._on_device[(name, key)] = self._column(name, self.hyper[key], dtype)
        return self._on_device[(name, key)]

    def _column(self, name: str, values: Tensor, dtype: torch.dtype) -> Tensor:
        """Per-member values (host, double) as `dtype` on the parameters' device, shaped for `name`."""
        return values.to(dtype).to(self.device).view(-1, *[1] * (self.params[name].ndim - 1))

    def zero_grad(self) -> None:
        for parameter in self.params.values():
            parameter.grad = None

    def step(self, closure: Callable[[], Tensor]) -> Tensor:
        """`closure()` (zero the gradients, forward, backward: the members' losses), then each member's
        update, as torch.optim's `step(closure)` does for one; returns the closure's losses."""
        with torch.enable_grad():
            losses = closure()
        self._update()
        return losses

    @torch.no_grad()
    def _update(self) -> None:
        self.step_count += 1
        for name, param in self.params.items():
            assert param.grad is not None
            if self.kind == "SGD":
                self._sgd(name, param, param.grad)
            else:
                self._adam(name, param, param.grad)

    def _sgd(self, name: str, param: Tensor, grad: Tensor) -> None:
        def h(key: str) -> Tensor:
            return self._shaped(name, key, param.dtype)

        grad = grad + h("weight_decay") * param
        momentum = h("momentum")
        state = self.state[name]
        if bool((self.hyper["momentum"] != 0).any()):
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = grad.clone()
            else:
                state["momentum_buffer"].mul_(momentum).add_(grad)
            buffer = state["momentum_buffer"]
            moved = torch.where(h("nesterov") != 0, grad + momentum * buffer, buffer)
            grad = torch.where(momentum != 0, moved, grad)  # no momentum: the plain gradient
        param.sub_(h("lr") * grad)

    def _adam(self, name: str, param: Tensor, grad: Tensor) -> None:
        def h(key: str) -> Tensor:
            return self._shaped(name, key, param.dtype)

        lr, decay = self.hyper["lr"], self.hyper["weight_decay"]
        if self.decoupled:
            param.mul_(self._column(name, 1 - lr * decay, param.dtype))
        else:
            grad = grad + h("weight_decay") * param
        state = self.state[name]
        if "exp_avg" not in state:
            state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(param), torch.zeros_like(param)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - h("beta1"))
        exp_avg_sq.mul_(h("beta2")).addcmul_(grad, grad * (1 - h("beta2")))
        # Bias corrections in double precision, as torch computes them in Python floats.
        correction1 = 1 - self.hyper["beta1"] ** self.step_count
        correction2_sqrt = (1 - self.hyper["beta2"] ** self.step_count) ** 0.5
        step_size = self._column(name, lr / correction1, param.dtype)
        denom = (exp_avg_sq.sqrt() / self._column(name, correction2_sqrt, param.dtype)).add_(self.eps)
        param.sub_(step_size * (exp_avg / denom))

    def export(self, row: int, optimizer: Any, model: nn.Module) -> None:
        """Member `row`'s state into its own (never stepped) optimizer, keyed by its model's parameters,
        as its solo optimizer would hold it after the same steps."""
        for name, parameter in model.named_parameters():
            state = self.state[name]
            if self.kind == "SGD":
                if float(self.hyper["momentum"][row]) != 0 and "momentum_buffer" in state:
                    optimizer.state[parameter] = {"momentum_buffer": state["momentum_buffer"][row].clone()}
            elif "exp_avg" in state:
                optimizer.state[parameter] = {
                    "step": torch.tensor(self.step_count, dtype=torch.float32),
                    "exp_avg": state["exp_avg"][row].clone(),
                    "exp_avg_sq": state["exp_avg_sq"][row].clone(),
                }
