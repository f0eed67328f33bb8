"""What every unlearning method shares: the policy, trainable parameters, optimiser, guards and saving."""

from __future__ import annotations

import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import ClassVar, Literal

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities.warnings import PossibleUserWarning

from unlearn.checks import refuse
from unlearn.data.collate import IGNORE_INDEX
from unlearn.data.prompts import PromptFormat
from unlearn.io import atomic_save_dir, prepare_output
from unlearn.losses import LMHeadInputs, mean_token_nll
from unlearn.methods.adapter import Adapter
from unlearn.models import DTYPES, load_tokenizer
from unlearn.strategies import (
    allow_unused_parameters,
    full_state_dict,
    has_whole_weights,
    mean_over_ranks,
    ranks_where,
    zero3_model_loading,
)

# Why a loss over the whole vocabulary cannot take the fused path, and the fix.
FUSED_ONLY = "fused_logprob never builds (it returns answer log-probs); set model.init_args.fused_logprob: false"


class UnlearnModule(L.LightningModule, ABC):
    """Base of all methods: subclasses implement `objective(batch) -> {"loss": ..., other terms}`."""

    full_logits = False  # whether the forget loss reads every vocabulary logit, so fused_logprob cannot serve it

    partial_forward = False  # whether `objective` stops the policy's forward at a hooked layer
    shares_outputs = True  # whether a training step forwards each batch role once for all its terms (sharing_outputs)
    # Deprecated init_args keys and their new names: config files giving the old key still load, with a FutureWarning
    # (unlearn.config.upgrade); any class a config names (an adapter, an eval task) may list its own.
    renamed_args: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        model: str = "tiny-target",
        dtype: str = "float32",
        trainable: str | None = None,
        adapter: Adapter | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
        save_dir: str | None = None,
        fused_logprob: bool = False,
        kernel_backend: Literal["auto", "triton", "torch"] = "auto",
        prompt_format: str = "plain",
    ) -> None:
        """
        Args:
            model: hub id, local path, or built-in name (tiny-target, tiny-retain, tiny-scratch) of the policy.
            dtype: float32, bfloat16 or float16 weights.
            trainable: regex on parameter names selecting what to train; None trains every parameter.
            adapter: train only added weights on the frozen base instead (unlearn.methods.lora.LoRA,
                unlearn.methods.grun.GRUN); `trainable` is then ignored, the reference is the base with the
                adapter off, and fit saves the adapter (plus a merged model where the adapter can and is asked to).
            optimizer: optimiser class and its arguments (class_path / init_args in YAML).
            lr_scheduler: optional scheduler, stepped every optimiser step.
            save_dir: where fit saves the result in Hugging Face format; default <default_root_dir>/model.
            fused_logprob: answer log-probs and entropies straight from the hidden states through the fused
                lm-head kernel (unlearn.kernels.fused_linear_logprob): the (B, T, V) logits are never built.
            kernel_backend: auto = Triton on CUDA and chunked PyTorch elsewhere; triton or torch forces one.
            prompt_format: how questions are put to the model in training, evaluation and sampling alike: plain
                ("Question: ...\nAnswer:"), chat (the tokenizer's chat template, for instruction-tuned models), or
                a template containing {question}; the CLI passes it to the data module too.
        """
        super().__init__()
        if dtype not in DTYPES:
            refuse([f"model.init_args.dtype={dtype!r} is not a weight type; set it to one of {sorted(DTYPES)}"])
        self.save_hyperparameters()
        self.model_name = model
        self.dtype_name = dtype
        self.trainable = trainable
        self.adapter = adapter
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.save_dir = save_dir
        self.fused_logprob = fused_logprob
        if fused_logprob and self.full_logits:
            refuse([f"{type(self).__name__}'s loss reads every vocabulary logit, which {FUSED_ONLY}"])
        self.kernel_backend = kernel_backend
        self.prompt_format = PromptFormat(prompt_format)
        self.model: torch.nn.Module | None = None
        self._shared_outputs: dict[str, torch.Tensor | LMHeadInputs] | None = None  # by role, in sharing_outputs
        self._fp32_buffers: set[str] = set()
        self.strict_loading = False  # checkpoints leave the frozen reference out
        self.register_state_dict_post_hook(_without_reference)

    def configure_model(self) -> None:
        """Load the policy once, then let the method prepare what it needs from it."""
        if self.model is not None:
            return
        self.tokenizer = load_tokenizer(self.model_name)
        self.prompt_format.prompt("x", self.tokenizer)  # a chat format without a chat template fails before loading
        self.hf_deepspeed_config = zero3_model_loading(self._trainer and self._trainer.strategy)
        from unlearn.methods.saved import load_saved  # its GRUN import reaches back to this module

        self.model = load_saved(self.model_name, self.dtype_name).train()  # from_pretrained returns eval mode
        if self.adapter is not None:
            self.adapter.attach(self.model, self.model_name, self.tokenizer, self.prompt_format)
        if self.fused_logprob:
            check_fusable_head(self.model, self.model_name)  # after the adapter, which may have wrapped the head
        self.prepare()
        self.select_trainable()
        if self.frozen_reference is not None:
            expect_eval_mode(self.frozen_reference)

    def prepare(self) -> None:
        """Hook for a method to check the model and build its reference; runs right after loading."""

    def register_fp32_buffer(self, name: str, tensor: torch.Tensor, persistent: bool = True) -> None:
        """A buffer for state kept across steps (λ, reference scores): fp32 whatever the model's dtype, as bf16
        rounds small updates away (1.0 + 0.003 is 1.0 in bf16)."""
        self.register_buffer(name, tensor.float(), persistent=persistent)
        self._fp32_buffers.add(name)

    def _apply(self, fn, recurse=True):
        """Dtype casts (Lightning's bf16-true) leave the fp32 buffers and an adapter's weights as they are (bf16 would
        round small updates away); moves move them."""
        kept = {name: self._buffers[name] for name in self._fp32_buffers}
        weights = {param: param.data for param in self.adapter_weights() if param.dtype == torch.float32}
        super()._apply(fn, recurse)
        for name, value in kept.items():
            self._buffers[name] = value.to(self._buffers[name].device)
        for param, value in weights.items():
            param.data = value.to(param.device)
        return self

    def adapter_weights(self) -> list[torch.nn.Parameter]:
        """The weights an adapter added (what trains when there is one); none without an adapter or a model."""
        if self.adapter is None or getattr(self, "model", None) is None:
            return []
        return [param for param in self.model.parameters() if param.requires_grad]

    @property
    def frozen_reference(self) -> torch.nn.Module | None:
        """The frozen copy `prepare` built (unlearn.methods.reference.frozen_copy), if the method holds one."""
        reference = getattr(self, "reference", None)
        return reference if isinstance(reference, torch.nn.Module) else None

    def train(self, mode: bool = True) -> UnlearnModule:
        """Keep a frozen reference in eval mode whatever Lightning does to the policy."""
        super().train(mode)
        if self.frozen_reference is not None:
            self.frozen_reference.eval()
        return self

    def select_trainable(self) -> None:
        """Freeze every parameter whose name does not match `trainable`; an adapter has chosen already."""
        if self.trainable is None or self.adapter is not None:
            return
        pattern = re.compile(self.trainable)
        matched = 0
        for name, param in self.model.named_parameters():
            param.requires_grad_(bool(pattern.search(name)))
            matched += param.requires_grad
        if not matched:
            names = [n for n, _ in self.model.named_parameters()][:6]
            raise ValueError(f"trainable={self.trainable!r} matches no parameter; names look like {names}")

    @abstractmethod
    def objective(self, batch: dict) -> dict[str, torch.Tensor]:
        """The method's loss and the terms worth logging."""

    def forward(self, inputs: dict[str, torch.Tensor], **kwargs) -> torch.Tensor:
        """Logits (B, T, V) of the policy on a collated batch."""
        return self.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], **kwargs).logits

    def lm_outputs(self, inputs: dict[str, torch.Tensor], role: str | None = None) -> torch.Tensor | LMHeadInputs:
        """What the policy's losses read (see `outputs_of`; logits for a method that refuses `fused_logprob`). `role`
        says `inputs` is the step's `batch[role]`: inside `sharing_outputs`, each role is forwarded once and every
        term reads that forward."""
        if role is None or self._shared_outputs is None:
            return self.outputs_of(self.model, inputs)
        if role not in self._shared_outputs:
            self._shared_outputs[role] = self.outputs_of(self.model, inputs)
        return self._shared_outputs[role]

    @contextmanager
    def sharing_outputs(self) -> Iterator[None]:
        """One policy forward per batch role for the terms computed inside, which must not move the weights."""
        self._shared_outputs = {}
        try:
            yield
        finally:
            self._shared_outputs = None

    def outputs_of(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor | LMHeadInputs:
        """Logits of the policy or a reference, or its hidden states + lm-head when `fused_logprob` is on."""
        if not self.fused_logprob:
            return model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
        hidden = model.base_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        head = model.get_output_embeddings()
        return LMHeadInputs(hidden.last_hidden_state, head.weight, head.bias, backend=self.kernel_backend, head=head)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """The step's terms, each batch role forwarded once for all of them, and a loss that every rank checked."""
        with self.sharing_outputs() if self.shares_outputs else nullcontext():
            terms = self.objective(batch)
            if self.adapter is not None:
                terms = self.adapter.extend_objective(self, batch, terms)
        loss = terms["loss"]
        # Decided together: a rank that raised alone would leave the others waiting in the next collective.
        bad = ranks_where(not torch.isfinite(loss), loss.device)
        if bad:
            raise FloatingPointError(
                f"{type(self).__name__}: the loss became NaN or infinite on rank {', '.join(map(str, bad))} at step "
                f"{self.global_step}; lower the learning rate or check the data. Nothing was saved."
            )
        # Averaged over ranks: with token means normalised by the global count, the global batch's loss.
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()}, prog_bar=True, batch_size=1, sync_dist=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Each role's answer NLL as val/<role>_nll: a cheap look at the model beside the evaluator's."""
        self._log_nll(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        """Each role's answer NLL as test/<role>_nll, beside the evaluator's metrics."""
        self._log_nll(batch, "test")

    def _log_nll(self, batch: dict, stage: str) -> None:
        for role, inputs in batch.items():
            nll = mean_token_nll(self.lm_outputs(inputs), inputs["labels"])
            self.log(f"{stage}/{role}_nll", nll, batch_size=len(inputs["input_ids"]), sync_dist=True)

    def configure_optimizers(self):
        """The configured optimiser over the trainable weights only, its scheduler stepped every step."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def save_target(self) -> Path:
        """Where fit saves the unlearned model."""
        return Path(self.save_dir or Path(self.trainer.default_root_dir) / "model")

    def needed_data(self) -> dict[str, str]:
        """The data roles fit trains on, each with what to say when it is missing: checked before any model loads."""
        return {"forget": f"{type(self).__name__} unlearns data.forget, which is not set; add a forget source"}

    def missing_data(self, datamodule: L.LightningDataModule | None) -> list[str]:
        """One problem per data role this method or its adapter needs that the data section does not give, then what
        the adapter cannot train on (by the kind of each role's rows)."""
        roles = getattr(datamodule, "roles", None)
        if roles is None:  # dataloaders passed to fit directly: nothing to check
            return []
        needed = {**self.needed_data(), **(self.adapter.needed_data() if self.adapter else {})}  # the adapter's need
        # stands whatever the method's weights are, so its message (not "or set retain_weight: 0") is the one given
        problems = [problem for role, problem in needed.items() if role not in roles()]
        if self.adapter is not None:
            sources = getattr(datamodule, "sources", {})
            kinds = {role: getattr(s, "kind", None) for role, s in sources.items() if s is not None}
            problems += self.adapter.data_problems(kinds)
        return problems

    def setup(self, stage: str) -> None:
        """Before the model loads: the data this method trains on must be there, fit's save folder must be writable
        (or the weights are lost after training), and an earlier model there is moved aside, so that an interrupted
        run leaves none that looks like its own. The strategy must suit the method; DDP is told that an adapter or a
        forward stopped at a hooked layer leaves some trainable weights without a gradient."""
        strategy = self.trainer.strategy
        problems = self.strategy_problems(strategy, stage)
        if stage == "fit":
            problems += self.missing_data(self.trainer.datamodule)
        refuse(problems)
        if self.adapter is not None or self.partial_forward:
            allow_unused_parameters(strategy)
        if stage == "fit":
            prepare_output(self.save_target(), "model.init_args.save_dir", move=self.trainer.is_global_zero)

    def strategy_problems(self, strategy: L.pytorch.strategies.Strategy, stage: str) -> list[str]:
        """What this method or its adapter cannot do under the trainer's strategy, each with what to use instead."""
        return [] if self.adapter is None else self.adapter.strategy_problems(strategy)

    def on_train_end(self) -> None:
        """Save the unlearned policy (or its adapter) and its tokenizer in Hugging Face format, atomically, as soon as
        training ends: before the final evaluation, so that metrics.json is written last, after the model."""
        target = self.save_target()
        state = full_state_dict(self.model, keep=self.trainer.is_global_zero)
        if self.trainer.is_global_zero:

            def write(folder: Path) -> None:
                if self.adapter is not None:
                    self.adapter.save(self.model, state, folder)
                else:
                    self.model.save_pretrained(folder, state_dict=state)
                self.tokenizer.save_pretrained(folder)

            atomic_save_dir(target, write)
            print(f"saved the unlearned model to {target}")
        self.trainer.strategy.barrier()


class SelfBackward:
    """Mixin (first base) for methods whose `objective` back-propagates itself, several passes per step (SAM's
    perturbed forget pass, TAR's attack trajectory): manual optimisation, one optimiser step on what it left."""

    # What the method does with whole weights and gradients, and what to use instead, for its strategy refusal.
    whole_weights_use = "moves every trainable weight by the whole gradient"
    whole_weights_instead = ""
    # Its passes back-propagate between terms and may move the weights (SAM's ε): each reads a forward of its own.
    shares_outputs = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.automatic_optimization = False

    def strategy_problems(self, strategy: L.pytorch.strategies.Strategy, stage: str) -> list[str]:
        """Its passes read and move whole weights by whole gradients: ranks must hold both, as on one device or DDP."""
        problems = super().strategy_problems(strategy, stage)
        if stage == "fit" and not has_whole_weights(strategy):
            problems.append(
                f"{type(self).__name__} {self.whole_weights_use}, which trainer.strategy={type(strategy).__name__} "
                f"partitions or keeps in its own buffers; train it on one device or with trainer.strategy: ddp"
                f"{self.whole_weights_instead}"
            )
        return problems

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """One optimiser and scheduler step on the gradients `objective` leaves in .grad, after the base's NaN guard."""
        optimizer = self.optimizers()
        optimizer.zero_grad()
        loss = super().training_step(batch, batch_idx)
        optimizer.step()
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()
        return loss


def expect_eval_mode(reference: torch.nn.Module) -> None:
    """A frozen reference is in eval mode on purpose: silence Lightning's fit-start warning for exactly its count of
    eval modules, so that any other module left in eval mode (a count that differs) still warns."""
    count = sum(not module.training for module in reference.modules())
    if count:
        warnings.filterwarnings(
            "ignore",
            message=re.escape(f"Found {count} module(s) in eval mode at the start of training."),
            category=PossibleUserWarning,
            module=r"lightning\.pytorch\.loops\.fit_loop",
        )


def _without_reference(module: torch.nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    """A frozen reference is rebuilt from the base model: leave it out of every checkpoint, Lightning's or DeepSpeed's
    (whose engine saves the module's state_dict itself)."""
    for key in [k for k in state_dict if k.startswith(f"{prefix}reference.")]:
        del state_dict[key]


def check_fusable_head(model: torch.nn.Module, name: str) -> None:
    """The fused kernel computes hidden·Wᵀ + b: refuse heads that do more (soft-capping, scaling, a LoRA on the head,
    whose `weight` is the base weight alone)."""
    config = model.config
    extras = {k: getattr(config, k, None) for k in ("final_logit_softcapping", "logit_scale")}
    extras = {k: v for k, v in extras.items() if v not in (None, 1.0)}
    head = model.get_output_embeddings()
    if extras or not isinstance(head, torch.nn.Linear):
        kind = extras or f"{type(head).__module__}.{type(head).__qualname__}"
        raise ValueError(f"fused_logprob needs a plain linear lm-head, but {name} has {kind}; set fused_logprob: false")


def token_count(inputs: dict) -> torch.Tensor | None:
    """The global answer tokens per rank of a training batch, which token means divide by (None outside fit)."""
    return inputs.get("tokens_per_rank")


def token_count_in(labels: torch.Tensor, inputs: dict) -> torch.Tensor | None:
    """`token_count(inputs)` for labels a method has thinned (all ranks count theirs together; None outside fit)."""
    if token_count(inputs) is None:
        return None
    count = (labels[:, 1:] != IGNORE_INDEX).sum().float()
    return mean_over_ranks(count, torch.ones((), device=count.device))


def position_count(inputs: dict) -> torch.Tensor | None:
    """The global non-padding positions per rank of a training batch, for means over every token's activation."""
    return inputs.get("positions_per_rank")
