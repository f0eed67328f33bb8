"""What every method shares: the NaN guard, checkpoints without the reference, trainable selection, model paths,
and a frozen reference's eval mode kept out of Lightning's warnings."""

import warnings

import pytest

from unlearn.methods import NPO, GradientAscent


def test_nan_loss_stops_the_run_and_saves_nothing(tmp_path, fit, adam):
    class Broken(GradientAscent):
        def objective(self, batch):
            terms = super().objective(batch)
            return {"loss": terms["loss"] * float("nan") if self.global_step == 1 else terms["loss"]}

    with pytest.raises(FloatingPointError, match="at step 1"):
        fit(Broken(model="tiny-scratch", optimizer=adam(1e-3)), tmp_path, steps=3)
    assert not (tmp_path / "model").exists()


def test_checkpoints_leave_the_reference_out():
    """The module's state_dict, which Lightning and DeepSpeed both save, has the policy but not the frozen copy."""
    module = NPO(model="tiny-scratch", reference="frozen")
    module.configure_model()
    assert any(k.startswith("reference.") for k, _ in module.named_parameters()), "the copy exists"
    state = module.state_dict()
    assert not any(k.startswith("reference.") for k in state)
    assert {f"model.{k}" for k in module.model.state_dict()} <= set(state)


def test_unmatched_trainable_regex_is_a_clear_error():
    module = GradientAscent(model="tiny-scratch", trainable=r"no_such_weight")
    with pytest.raises(ValueError, match="matches no parameter"):
        module.configure_model()


def test_missing_local_model_path_is_a_clear_error(tmp_path):
    module = GradientAscent(model=str(tmp_path / "no_such_model"))
    with pytest.raises(ValueError, match="does not exist"):
        module.configure_model()


EVAL_MODE_WARNING = "in eval mode at the start of training"


def eval_mode_warnings(module, tmp_path, fit, adam) -> list[str]:
    """Lightning's warnings about modules in eval mode when `module` trains one step."""
    module.optimizer_factory = adam(1e-3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(module, tmp_path, steps=1)
    return [str(w.message) for w in caught if EVAL_MODE_WARNING in str(w.message)]


def test_a_frozen_reference_does_not_warn_at_fit_start(tmp_path, fit, adam):
    assert eval_mode_warnings(NPO(model="tiny-scratch", reference="frozen"), tmp_path, fit, adam) == []


def test_another_module_in_eval_mode_still_warns(tmp_path, fit, adam):
    class EvalHead(NPO):
        def prepare(self):
            super().prepare()
            self.model.lm_head.eval()

    module = EvalHead(model="tiny-scratch", reference="frozen")
    found = eval_mode_warnings(module, tmp_path, fit, adam)
    count = len(list(module.reference.modules())) + 1  # the reference's and the head
    assert len(found) == 1 and found[0].startswith(f"Found {count} module(s)"), found
