"""One prompt format reaches training, evaluation and the sampler alike; chat prompts carry their own specials."""

import pytest
import torch

from unlearn.answers import generate_answers
from unlearn.data.collate import IGNORE_INDEX, Collator
from unlearn.data.prompts import PLAIN, PromptFormat
from unlearn.eval.scoring import _encode_choices
from unlearn.methods.grun import marker_ids, prompt_end_positions
from unlearn.tiny import build_tiny_model, build_tiny_tokenizer

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
ROW = {"question": "Where does Kari Mo live?", "answer": "Velmora"}


@pytest.fixture(scope="module")
def chat_tokenizer():
    tokenizer = build_tiny_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = CHATML
    return tokenizer


def test_prompts_by_hand(chat_tokenizer):
    chat = PromptFormat("chat")
    assert PLAIN.prompt("Who?", chat_tokenizer) == "Question: Who?\nAnswer:"
    assert chat.prompt("Who?", chat_tokenizer) == "<|im_start|>user\nWho?<|im_end|>\n<|im_start|>assistant\n"
    system = PromptFormat("chat", system="Be brief.").prompt("Who?", chat_tokenizer)
    assert system.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWho?")
    assert PromptFormat("Q: {question}\nA:").prompt("Who?", chat_tokenizer) == "Q: Who?\nA:"
    assert PLAIN.suffix(chat_tokenizer) == "\nAnswer:"
    assert chat.suffix(chat_tokenizer) == "<|im_end|>\n<|im_start|>assistant\n"


def test_chat_row_is_the_template_then_the_answer_without_a_second_bos(chat_tokenizer):
    fmt = PromptFormat("chat")
    batch = Collator(chat_tokenizer, prompt_format=fmt)([ROW])
    prompt = "<|im_start|>user\nWhere does Kari Mo live?<|im_end|>\n<|im_start|>assistant\n"
    whole = chat_tokenizer(prompt + "Velmora", add_special_tokens=False).input_ids
    prompt_ids = chat_tokenizer(prompt, add_special_tokens=False).input_ids
    assert batch["input_ids"][0].tolist() == whole + [chat_tokenizer.eos_token_id]
    assert chat_tokenizer.bos_token_id not in whole
    labelled = [t for t in batch["labels"][0].tolist() if t != IGNORE_INDEX]
    assert labelled == whole[len(prompt_ids) :] + [chat_tokenizer.eos_token_id]
    assert chat_tokenizer.decode(labelled, skip_special_tokens=True) == "Velmora"


@pytest.mark.parametrize("style", ["plain", "chat", "Q: {question}\nA:"])
def test_training_evaluation_and_sampling_see_the_same_prompt(chat_tokenizer, style):
    """The prompt ids the collator trains on, the ones generation (greedy or sampled) starts from, and cloze MCQ's
    context are the same ids."""
    fmt = PromptFormat(style)
    batch = Collator(chat_tokenizer, prompt_format=fmt)([ROW])
    trained = batch["input_ids"][0][batch["labels"][0] == IGNORE_INDEX][: int(batch["attention_mask"][0].sum())]
    model = build_tiny_model(len(chat_tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=2)  # fmt: skip
    seen = []
    original = model.generate

    def spy(**kwargs):
        seen.append(kwargs["input_ids"][kwargs["attention_mask"].bool()].tolist())
        return original(**kwargs)

    model.generate = spy
    for sample in (False, True):
        generate_answers(model, chat_tokenizer, [ROW["question"]], max_new_tokens=2, do_sample=sample,
                         prompt_format=fmt)  # fmt: skip
    contexts, _ = _encode_choices(chat_tokenizer, [{**ROW, "choices": ["Velmora", "Tarsk"]}], "cloze", "", fmt)
    assert seen == [trained.tolist()] * 2
    assert contexts[0] == trained.tolist()


def test_grun_finds_the_end_of_a_chat_prompt(chat_tokenizer):
    fmt = PromptFormat("chat")
    marker = torch.tensor(marker_ids(chat_tokenizer, fmt.suffix(chat_tokenizer), fmt))
    batch = Collator(chat_tokenizer, prompt_format=fmt)([ROW, {"text": "Kari Mo lives in Tarsk."}])
    ends = prompt_end_positions(batch["input_ids"], marker)
    first_answer = int((batch["labels"][0] != IGNORE_INDEX).nonzero()[0])
    assert ends.tolist() == [first_answer - 1, -1]


def test_bad_formats_fail_with_the_fix(chat_tokenizer):
    with pytest.raises(ValueError, match="plain, chat, or a template containing"):
        PromptFormat("Question: {q}")
    with pytest.raises(ValueError, match="needs prompt_format: chat"):
        PromptFormat("plain", system="Be brief.")
    with pytest.raises(ValueError, match="has none; use plain"):
        PromptFormat("chat").prompt("Who?", build_tiny_tokenizer())
