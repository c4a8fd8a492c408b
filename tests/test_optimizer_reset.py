"""Optimizer-state reset: after a reset, the next update equals a freshly built optimizer's first update."""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator

from hf_sgdr import SGDRScheduler, check_resettable, reset_optimizer_state

OPTIMIZERS = [
    (torch.optim.AdamW, {"lr": 0.01, "foreach": False}),
    (torch.optim.AdamW, {"lr": 0.01, "foreach": True}),
    (torch.optim.AdamW, {"lr": 0.01, "fused": True}),
    (torch.optim.Adam, {"lr": 0.01, "amsgrad": True}),
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "dampening": 0.5}),
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    (torch.optim.NAdam, {"lr": 0.01}),
    (torch.optim.RAdam, {"lr": 0.01}),
    (torch.optim.Adamax, {"lr": 0.01}),
    (torch.optim.RMSprop, {"lr": 0.01, "momentum": 0.5, "centered": True}),
    (torch.optim.Adagrad, {"lr": 0.1, "initial_accumulator_value": 0.1}),
    (torch.optim.Adadelta, {"lr": 1.0}),
]


def _gradients(seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 3, generator=generator), torch.randn(3, generator=generator)]


def _update(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], grads: list[torch.Tensor]) -> list:
    before = [p.detach().clone() for p in params]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    optimizer.step()
    return [p.detach() - b for p, b in zip(params, before, strict=True)]


@pytest.mark.parametrize(("cls", "kwargs"), OPTIMIZERS, ids=lambda x: getattr(x, "__name__", str(x)))
def test_update_after_reset_equals_a_fresh_optimizers_first_update(cls: type, kwargs: dict) -> None:
    params = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(3))]
    optimizer = cls(params, **kwargs)
    for seed in range(5):  # accumulate some history
        _update(optimizer, params, _gradients(seed))
    tensors_before = {id(v) for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)}

    assert reset_optimizer_state(optimizer) == 2
    # In place: the surviving state tensors are the same objects, on the same device and dtype.
    tensors_after = {id(v) for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)}
    assert tensors_after <= tensors_before

    fresh_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    fresh = cls(fresh_params, **kwargs)
    grads = _gradients(99)
    after_reset = _update(optimizer, params, grads)
    first = _update(fresh, fresh_params, grads)
    for got, expected in zip(after_reset, first, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)


def test_zeroing_only_the_moments_would_be_wrong() -> None:
    """Guards the reason `step` is reset too: bias correction with the old step mis-scales the update."""
    params = [torch.nn.Parameter(torch.randn(5))]
    optimizer = torch.optim.AdamW(params, lr=0.01, weight_decay=0.0)
    for seed in range(10):
        _update(optimizer, params, [torch.randn(5, generator=torch.Generator().manual_seed(seed))])
    for state in optimizer.state.values():
        state["exp_avg"].zero_()
        state["exp_avg_sq"].zero_()
    grad = [torch.ones(5)]
    wrong = _update(optimizer, params, grad)[0]
    assert not torch.allclose(wrong.abs(), torch.full((5,), 0.01), rtol=1e-3)  # not lr * sign(g)
    reset_optimizer_state(optimizer)
    right = _update(optimizer, params, grad)[0]
    torch.testing.assert_close(right.abs(), torch.full((5,), 0.01), rtol=1e-4, atol=1e-7)


def test_reset_through_an_accelerate_wrapped_optimizer() -> None:
    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(3, 2)
    optimizer = accelerator.prepare(torch.optim.AdamW(model.parameters(), lr=0.01))
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    inner_state = optimizer.optimizer.state
    assert all(float(s["step"]) == 1.0 for s in inner_state.values())
    assert reset_optimizer_state(optimizer) == 2
    assert all(float(s["step"]) == 0.0 and not s["exp_avg"].any() for s in inner_state.values())


def test_scheduler_resets_state_exactly_at_restarts() -> None:
    params = [torch.nn.Parameter(torch.randn(3))]
    optimizer = torch.optim.AdamW(params, lr=0.01)
    scheduler = SGDRScheduler(optimizer, T_0=4, T_mult=2, reset_optimizer_state=True)
    steps_seen = []
    for _ in range(13):
        params[0].grad = torch.ones(3)
        optimizer.step()
        scheduler.step()
        steps_seen.append(int(optimizer.state[params[0]]["step"]))
    # Restarts after steps 4 and 12: the step counter goes back to 0 right there and nowhere else.
    assert steps_seen == [1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1]
    assert scheduler.num_optimizer_resets == 2


def test_unknown_optimizer_is_refused() -> None:
    class Custom(torch.optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {"lr": 0.1})

    with pytest.raises(ValueError, match="cannot reset the state of Custom"):
        check_resettable(Custom([torch.nn.Parameter(torch.randn(2))]))


def test_unknown_state_entry_is_refused_and_nothing_is_half_reset() -> None:
    params = [torch.nn.Parameter(torch.randn(2)), torch.nn.Parameter(torch.randn(2))]
    optimizer = torch.optim.AdamW(params, lr=0.01)
    for p in params:
        p.grad = torch.ones(2)
    optimizer.step()
    optimizer.state[params[1]]["mystery"] = torch.ones(2)  # only on the second parameter
    before = {id(p): {k: v.clone() for k, v in optimizer.state[p].items()} for p in params}
    with pytest.raises(ValueError, match=r"AdamW: its state holds 'mystery'.*set reset_optimizer_state=False"):
        reset_optimizer_state(optimizer)
    for p in params:  # the first parameter's entries were not zeroed before the refusal
        for key, value in optimizer.state[p].items():
            torch.testing.assert_close(value, before[id(p)][key], rtol=0, atol=0)


class AdamWWithEMA(torch.optim.AdamW):
    """A subclass of a supported optimizer that keeps one more state entry (an EMA of the weights)."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                state["ema"] = p.detach().clone() if "ema" not in state else state["ema"].lerp_(p, 0.1)
        return loss


def _first_step(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter]) -> None:
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()


def test_subclass_with_extra_state_is_refused_at_its_first_step_not_at_the_first_restart() -> None:
    params = [torch.nn.Parameter(torch.randn(3))]
    optimizer = AdamWWithEMA(params, lr=0.01)
    SGDRScheduler(optimizer, T_0=50, reset_optimizer_state=True)
    with pytest.raises(ValueError, match=r"AdamWWithEMA: its state holds 'ema'"):
        _first_step(optimizer, params)
    # Built once the state exists (a resumed run): refused at construction.
    with pytest.raises(ValueError, match=r"AdamWWithEMA: its state holds 'ema'"):
        SGDRScheduler(optimizer, T_0=50, reset_optimizer_state=True)


def test_subclass_with_extra_state_behind_accelerate_is_refused_at_its_first_step() -> None:
    params = [torch.nn.Parameter(torch.randn(3))]
    optimizer = Accelerator(cpu=True).prepare_optimizer(AdamWWithEMA(params, lr=0.01))
    check_resettable(optimizer)
    with pytest.raises(ValueError, match="'ema'"):
        _first_step(optimizer, params)


def test_subclass_without_extra_state_passes_the_first_step_check() -> None:
    class PlainSubclass(torch.optim.AdamW):
        pass

    params = [torch.nn.Parameter(torch.randn(3))]
    optimizer = PlainSubclass(params, lr=0.01)
    scheduler = SGDRScheduler(optimizer, T_0=2, reset_optimizer_state=True)
    for _ in range(4):
        _first_step(optimizer, params)
        scheduler.step()
    assert scheduler.num_optimizer_resets == 2


def test_sgdr_trainer_with_such_a_subclass_stops_at_the_first_step(tmp_path) -> None:
    from helpers.training import byte_lm_data, tiny_gpt2, training_args

    from hf_sgdr.training import SGDRTrainer

    model = tiny_gpt2()
    trainer = SGDRTrainer(
        model=model,
        args=training_args(tmp_path, max_steps=8),
        train_dataset=byte_lm_data(32),
        optimizers=(AdamWWithEMA(model.parameters(), lr=1e-3), None),
        sgdr_T_0=4,
        sgdr_reset_optimizer_state=True,
    )
    with pytest.raises(ValueError, match=r"AdamWWithEMA: its state holds 'ema'"):
        trainer.train()
    assert trainer.state.global_step == 0  # not a cycle of compute later
    assert not (tmp_path / "snapshots" / "cycle-000").exists()


def test_the_first_step_check_lives_beside_other_step_hooks() -> None:
    """The check used to remove its hooks from inside the optimizer's loop over them: with any other step
    pre-hook registered (the CUDA snapshot stager's), the second step raised "OrderedDict mutated during
    iteration" (seen on an H200 with optimizer resets)."""
    parameter = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([parameter], lr=0.1)
    check_resettable(optimizer)
    calls = []
    optimizer.register_step_pre_hook(lambda *args: calls.append(1))
    for _ in range(3):
        parameter.grad = torch.ones(3)
        optimizer.step()
    assert len(calls) == 3 and int(optimizer.state[parameter]["step"]) == 3


def test_reset_zeroes_the_state_in_one_foreach_call_per_device_and_dtype() -> None:
    """On a GPU every per-tensor `zero_` is a kernel launch on the training thread (for AdamW, two per parameter
    at every restart); the reset groups them. The ops are recorded at the dispatcher, so this holds on CPU too."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class RecordOps(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func.overloadpacket.__name__))
            return func(*args, **(kwargs or {}))

    params = [torch.nn.Parameter(torch.randn(8)) for _ in range(20)]
    params += [torch.nn.Parameter(torch.randn(8, dtype=torch.float64)) for _ in range(5)]
    optimizer = torch.optim.AdamW(params, lr=0.01)
    _update(optimizer, params, [torch.randn_like(p) for p in params])
    with RecordOps() as recorded:
        assert reset_optimizer_state(optimizer) == 25
    # float32 moments and the float32 step counters; float64 moments: two groups, no per-tensor zero_.
    assert recorded.ops.count("_foreach_zero_") == 2
    assert "zero_" not in recorded.ops and "fill_" not in recorded.ops
    for state in optimizer.state.values():
        assert all(not value.any() for value in state.values())
