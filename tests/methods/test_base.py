"""What every method shares: the NaN guard, checkpoints without the reference, trainable selection, model paths."""

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
