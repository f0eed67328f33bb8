"""The tiny models' recipe: the byte-level BPE trained on the embedded benchmark and the Llama shape that
unlearn/assets/tiny-target and tiny-retain were built with (configs/tiny/ trains them from `tiny-scratch`).

`unlearn.models` serves `tiny-scratch` from the shipped tiny-target tokenizer and config.json rather than from this
recipe, so the model loader never imports the benchmark; tests/test_tiny_assets.py checks both are this recipe's.
"""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from unlearn.data.synthetic import SyntheticBenchmark

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def build_tiny_tokenizer(
    vocab_size: int = 1024, benchmark: SyntheticBenchmark | None = None
) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on the fictional benchmark, so its names split into a few pieces."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    benchmark = benchmark or SyntheticBenchmark()
    tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(benchmark.corpus(), trainer=trainer)
    bos = SPECIAL_TOKENS["bos_token"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tokenizer.token_to_id(bos))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)


def build_tiny_model(vocab_size: int, seed: int = 0, **overrides) -> LlamaForCausalLM:
    """A Llama of about two million parameters: big enough to memorise the benchmark, fast on a CPU."""
    shape = dict(
        hidden_size=192, intermediate_size=512, num_hidden_layers=4, num_attention_heads=6, num_key_value_heads=6,
        max_position_embeddings=256, tie_word_embeddings=True,
    )  # fmt: skip
    config = LlamaConfig(
        vocab_size=vocab_size, pad_token_id=0, bos_token_id=1, eos_token_id=2, **{**shape, **overrides}
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)
