"""Scoring against unpadded one-sequence-at-a-time references, on a random tiny Llama and our tokenizer."""

import copy

import pytest
import torch
from torch.testing import assert_close
from transformers import AddedToken, LlamaForCausalLM

from unlearn.answers import _cut_at_stop, generate_answers
from unlearn.data.prompts import PLAIN, PromptFormat
from unlearn.eval import scoring
from unlearn.eval.scoring import choice_logprobs, letter_prompt, mcq_predictions
from unlearn.tiny import build_tiny_model, build_tiny_tokenizer

QUESTIONS = [
    "Where?",
    "Where does Xemoki Wanucla live?",
    "In which city is the home of a person whose name is long enough to need many more tokens than the rest?",
    "What pet does Bri Kadro keep?",
    "When was Tre Velmar born?",
]
CITIES = ["Velmora", "Tarsk", "Quillon", "Brask", "Rook"]


def plain_prompt(question: str) -> str:
    """The plain format written out by hand, independent of PromptFormat."""
    return f"Question: {question}\nAnswer:"


def tiny_llama(vocab_size: int) -> LlamaForCausalLM:
    """Two layers of width 32: every code path of a real Llama at a fraction of build_tiny_model's cost."""
    shape = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2
    )
    return build_tiny_model(vocab_size, tie_word_embeddings=False, max_position_embeddings=128, **shape).eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Width-32 matmuls run fastest on one thread; more only add synchronisation, worse on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_llama(len(tokenizer))


@pytest.fixture(scope="module")
def letter_tokenizer(tokenizer):
    """Our tokenizer splits " A" into two tokens; these added tokens make letters one token, as in Llama."""
    extended = copy.deepcopy(tokenizer)
    extended.add_tokens([AddedToken(f" {letter}", normalized=False) for letter in "ABCD"])
    return extended


@pytest.fixture(scope="module")
def letter_model(letter_tokenizer):
    return tiny_llama(len(letter_tokenizer))


def reference_scores(model, tokenizer, rows, template, prompt=plain_prompt) -> torch.Tensor:
    """Independent reference: one unpadded forward per (question, choice), float64 log-softmax, summed.

    The continuation's tokens are those the tokenised context + continuation adds, as lm-evaluation-harness splits.
    """
    width = max(len(row["choices"]) for row in rows)
    out = torch.full((len(rows), width), float("-inf"), dtype=torch.float64)
    for k, row in enumerate(rows):
        for c, choice in enumerate(row["choices"]):
            if template == "cloze":
                context, continuation = prompt(row["question"]), " " + choice
            else:
                context, continuation = letter_prompt(row["question"], row["choices"]), " " + "ABCD"[c]
            context_ids = tokenizer(context).input_ids
            continuation_ids = tokenizer(context + continuation).input_ids[len(context_ids) :]
            with torch.no_grad():
                logits = model(torch.tensor([context_ids + continuation_ids])).logits[0].double()  # (T, V)
            total = 0.0
            for t, token in enumerate(continuation_ids):
                position = len(context_ids) - 1 + t
                total += (logits[position, token] - torch.logsumexp(logits[position], dim=-1)).item()
            out[k, c] = total
    return out


def forbid(monkeypatch, path: str) -> None:
    """Make one scoring path fail, so a test proves which path produced its numbers."""

    def fail(*args, **kwargs):
        raise AssertionError(f"{path} should not run here")

    monkeypatch.setattr(scoring, path, fail)


def mcq_rows(choices_per_row: list[list[str]]) -> list[dict]:
    return [{"question": q, "choices": c, "answer": 0} for q, c in zip(QUESTIONS, choices_per_row, strict=False)]


def test_letter_prompt_is_the_harness_template():
    """description + stripped question, one `X. choice` line per choice, then `Answer:` (no space after)."""
    prompt = letter_prompt("  What is 2+2? \n", ["3", "4", "five"], description="About maths.\n\n")
    assert prompt == "About maths.\n\nWhat is 2+2?\nA. 3\nB. 4\nC. five\nAnswer:"
    with pytest.raises(ValueError, match="at most 26"):
        letter_prompt("q", [str(i) for i in range(27)])


@pytest.mark.parametrize("path", ["packed-eager", "packed-sdpa", "cache"])
def test_cloze_multi_token_choices_equal_unpadded_reference(model, tokenizer, monkeypatch, path):
    """Ragged rows (3 and 4 choices), prompts of different lengths, batches that split rows across calls; packed
    under both attention kernels that read a 4-D mask, and the key-value cache path the others take."""
    model = copy.deepcopy(model)
    if path == "cache":
        monkeypatch.setattr(scoring, "_takes_custom_mask", lambda model: False)
        forbid(monkeypatch, "_packed_scores")
    else:
        model.set_attn_implementation(path.removeprefix("packed-"))
        forbid(monkeypatch, "_cache_scores")
    choices = [
        ["crimson teal", "Velmora", "a pet ferret"],
        ["Eskabar", "Rook", "bridgewright of Tarsk", "1947"],
        ["owl", "goose", "hedgehog", "saffron ochre jade"],
        ["Quillon", "Brask", "Sundell"],
        ["1900", "1911", "1923", "1959"],
    ]
    rows = mcq_rows(choices)
    assert any(len(tokenizer(" " + c, add_special_tokens=False).input_ids) > 1 for c in choices[0])
    forbid(monkeypatch, "_next_token_scores")
    scores = choice_logprobs(model, tokenizer, rows, template="cloze", batch_size=3)
    expected = reference_scores(model, tokenizer, rows, "cloze")
    assert scores.dtype == torch.float32 and scores.shape == (5, 4)
    assert torch.isneginf(scores[0, 3]) and torch.isneginf(scores[3, 3])
    assert_close(scores.double(), expected, atol=1e-5, rtol=0)


def test_cloze_single_token_fast_path_equals_reference(model, tokenizer, monkeypatch):
    """One-token cities take the one-forward-per-question path: padding must not move the last position."""
    assert all(len(tokenizer(" " + c, add_special_tokens=False).input_ids) == 1 for c in CITIES)
    rows = mcq_rows([CITIES[:4], CITIES[1:], CITIES[:3], CITIES[2:], CITIES[::-1]])
    forbid(monkeypatch, "_cache_scores")
    scores = choice_logprobs(model, tokenizer, rows, template="cloze", batch_size=2)
    assert torch.isneginf(scores[2, 3]) and not torch.isinf(scores[4]).any()
    assert_close(scores.double(), reference_scores(model, tokenizer, rows, "cloze"), atol=1e-5, rtol=0)


def test_letter_fast_path_equals_general_path_and_reference(letter_model, letter_tokenizer, monkeypatch):
    """With one-token letters, the fast path agrees with the pair-by-pair general path and the reference."""
    rows = mcq_rows([["3", "4", "five", "six"]] * 5)
    contexts, continuations = scoring._encode_choices(letter_tokenizer, rows, "letter", "", PLAIN)
    assert all(len(ids) == 1 for conts in continuations for ids in conts)
    general = scoring._cache_scores(letter_model, contexts, continuations, scoring._Batching(0, 3, None, (0, None)))
    forbid(monkeypatch, "_cache_scores")
    scores = choice_logprobs(letter_model, letter_tokenizer, rows, template="letter", batch_size=2)
    assert_close(scores, torch.stack(general), atol=1e-5, rtol=0)
    assert_close(scores.double(), reference_scores(letter_model, letter_tokenizer, rows, "letter"), atol=1e-5, rtol=0)


def test_letter_with_two_token_letters_takes_general_path(model, tokenizer, monkeypatch):
    """The project tokenizer splits " A" into two tokens, so letters need the summed general path."""
    assert len(tokenizer(" A", add_special_tokens=False).input_ids) == 2
    rows = mcq_rows([["x", "y", "z", "w"], ["1", "2", "3"], ["p", "q", "r", "s"]])
    forbid(monkeypatch, "_next_token_scores")
    scores = choice_logprobs(model, tokenizer, rows, template="letter", batch_size=4)
    assert_close(scores.double(), reference_scores(model, tokenizer, rows, "letter"), atol=1e-5, rtol=0)


def test_continuation_merged_into_the_context_is_an_error(tokenizer):
    """A token spanning "Answer:" and " A" leaves the letter nothing of its own to score: say so, don't score 0."""
    merging = copy.deepcopy(tokenizer)
    merging.add_tokens([AddedToken("Answer: A", normalized=False)])
    with pytest.raises(ValueError, match=r"row 0: the tokenizer merges the continuations \[' A'\] into the end"):
        choice_logprobs(tiny_llama(len(merging)), merging, mcq_rows([["x", "y"]]), template="letter")


def test_choice_logprobs_rejects_bad_input_and_accepts_no_rows(model, tokenizer):
    with pytest.raises(ValueError, match="template"):
        choice_logprobs(model, tokenizer, mcq_rows([CITIES]), template="mmlu")
    with pytest.raises(ValueError, match="no choices"):
        choice_logprobs(model, tokenizer, mcq_rows([CITIES, []]))
    assert choice_logprobs(model, tokenizer, []).shape == (0, 0)


def test_scoring_restores_each_module_training_flag(tokenizer):
    """A callback runs mid-fit: the model goes back to train mode, a deliberately frozen block stays eval."""
    model = tiny_llama(len(tokenizer)).train()
    model.model.layers[0].eval()
    choice_logprobs(model, tokenizer, mcq_rows([CITIES]))
    generate_answers(model, tokenizer, QUESTIONS[:1], max_new_tokens=2)
    assert model.training and model.model.layers[1].training and not model.model.layers[0].training


def test_mcq_predictions_argmax_ignores_missing_choices():
    scores = torch.tensor([[-3.0, -1.0, float("-inf")], [float("-inf"), -5.0, -4.0]])
    assert mcq_predictions(scores).tolist() == [1, 2]
    assert mcq_predictions(torch.empty(0, 0)).shape == (0,)


def reference_answer(model, tokenizer, question: str, max_new_tokens: int) -> str:
    """Independent reference: greedy generation of one prompt alone, so no padding at all."""
    input_ids = torch.tensor([tokenizer(plain_prompt(question)).input_ids])
    output = model.generate(input_ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=0)
    return tokenizer.decode(output[0, input_ids.shape[1] :], skip_special_tokens=True).strip()


def test_generate_left_padded_batches_equal_single_prompts(model, tokenizer):
    """Prompts of 3 to 25 tokens in batches of 2 (last one ragged) answer exactly as each does alone."""
    answers = generate_answers(model, tokenizer, QUESTIONS, max_new_tokens=8, batch_size=2, stop=())
    assert answers == [reference_answer(model, tokenizer, q, 8) for q in QUESTIONS]
    assert all(answers) and tokenizer.padding_side == "right"


def test_generate_stops_at_the_first_stop_string(model, tokenizer):
    """Stopping generation early keeps the prefix: the answer is the unstopped text cut at the stop string."""
    full = generate_answers(model, tokenizer, QUESTIONS[1:2], max_new_tokens=10, stop=())[0]
    stop = full[len(full) // 2]
    stopped = generate_answers(model, tokenizer, QUESTIONS[1:2], max_new_tokens=10, stop=("\n", stop))[0]
    assert stopped == full[: full.index(stop)].strip()


def test_generate_cuts_at_any_eos_of_the_generation_config(tokenizer):
    """A model-declared EOS id (as Llama 3 lists several) ends the answer at its first occurrence."""
    model = tiny_llama(len(tokenizer))
    input_ids = torch.tensor([tokenizer(plain_prompt(QUESTIONS[1])).input_ids])
    generated = model.generate(input_ids, max_new_tokens=8, do_sample=False, pad_token_id=0)[0, input_ids.shape[1] :]
    eos = int(generated[3])
    cut = generated.tolist().index(eos)
    model.generation_config.eos_token_id = [2, eos]
    answer = generate_answers(model, tokenizer, QUESTIONS[1:2], max_new_tokens=8, stop=())[0]
    assert answer == tokenizer.decode(generated[:cut], skip_special_tokens=True).strip()


def test_sampling_at_low_temperature_is_greedy(model, tokenizer):
    """Pure temperature sampling concentrates on the argmax as the temperature goes to 0."""
    greedy = generate_answers(model, tokenizer, QUESTIONS, max_new_tokens=6, stop=())
    torch.manual_seed(0)
    sampled = generate_answers(model, tokenizer, QUESTIONS, max_new_tokens=6, stop=(), do_sample=True, temperature=1e-4)
    assert sampled == greedy


def test_sampling_ignores_the_model_top_k(tokenizer):
    """Hub configs often set top_k; top_k=1 would make sampling greedy, but ours samples the full softmax."""
    model = tiny_llama(len(tokenizer))
    model.generation_config.top_k = 1
    greedy = generate_answers(model, tokenizer, QUESTIONS, max_new_tokens=6, stop=())
    torch.manual_seed(0)
    sampled = generate_answers(model, tokenizer, QUESTIONS, max_new_tokens=6, stop=(), do_sample=True)
    assert sampled != greedy


@pytest.mark.parametrize(
    ("text", "stop", "expected"),
    [
        (" Velmora\nQuestion: x", ("\n",), "Velmora"),
        ("a. b\nc", ("\n", "."), "a"),
        ("x\ny\nz", ("\n",), "x"),
        ("  no stop here  ", ("\n",), "no stop here"),
        ("keep all", ("", "zz"), "keep all"),
        ("\nleading stop", ("\n",), ""),
    ],
)
def test_cut_at_stop(text, stop, expected):
    """The earliest of several stop strings wins; an empty stop string never matches."""
    assert _cut_at_stop(text, stop) == expected


def test_shared_prefix_is_the_common_tokens_short_of_every_last_one(model):
    """Hand-built contexts: the prefix stops at the first difference, and before any context's last token."""
    assert scoring._shared_prefix(model, [[5, 6, 7, 8], [5, 6, 7, 9, 10]])[0] == 3
    assert scoring._shared_prefix(model, [[5, 6, 7], [5, 6, 7, 9]])[0] == 2
    assert scoring._shared_prefix(model, [[5, 6], [4, 6]]) == (0, None)
    assert scoring._shared_prefix(model, [[5, 6, 7]]) == (0, None)


@pytest.mark.parametrize("path", ["packed", "cache"])
def test_a_long_shared_prompt_runs_once_and_scores_as_the_reference(model, tokenizer, monkeypatch, path):
    """A system-prompt-like template every question shares: its tokens are forwarded once, the scores unchanged."""
    system = "You are a careful quiz player who answers every question about people and places with one name."
    fmt = PromptFormat(style=system + " Question: {question}\nAnswer:")
    rows = mcq_rows([CITIES[:4], ["crimson teal", "Velmora", "a pet ferret"], CITIES[1:], ["owl", "goose"]])
    if path == "cache":
        monkeypatch.setattr(scoring, "_takes_custom_mask", lambda model: False)
    forwarded = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: forwarded.append(kw["input_ids"].numel()), with_kwargs=True)
    try:
        scores = choice_logprobs(model, tokenizer, rows, template="cloze", batch_size=3, prompt_format=fmt)
    finally:
        hook.remove()
    expected = reference_scores(model, tokenizer, rows, "cloze", prompt=lambda q: fmt.prompt(q, tokenizer))
    assert_close(scores.double(), expected, atol=1e-5, rtol=0)
    shared = len(tokenizer(system).input_ids)
    assert forwarded[0] >= shared - 2, "the shared prompt runs first, on its own"
    contexts = [len(tokenizer(fmt.prompt(row["question"], tokenizer)).input_ids) for row in rows]
    assert sum(forwarded) < sum(contexts), "each question's context ran in full: the shared prompt was not reused"


@pytest.mark.parametrize("path", ["packed", "cache"])
def test_grun_intervention_scores_as_the_reference(tokenizer, monkeypatch, path):
    """GRUN edits the hidden state where the prompt ends: in a packed row (context then every choice) it must still
    act at the context's end only, as in one unpadded forward per choice."""
    from unlearn.methods.adapter import adapters_disabled
    from unlearn.methods.grun import GRUN

    model = tiny_llama(len(tokenizer))
    GRUN(layers=[0, 1], rank=2).attach(model, "tiny-scratch", tokenizer, PLAIN)
    torch.manual_seed(0)
    with torch.no_grad():
        for param in model.grun.parameters():
            param.add_(torch.randn_like(param))  # an edit far from the identity, gate open
    if path == "cache":
        monkeypatch.setattr(scoring, "_takes_custom_mask", lambda model: False)
    rows = mcq_rows([["crimson teal", "Velmora", "a pet ferret"], CITIES[1:], ["owl", "goose", "saffron ochre jade"]])
    scores = choice_logprobs(model, tokenizer, rows, template="cloze", batch_size=2)
    expected = reference_scores(model, tokenizer, rows, "cloze")
    assert_close(scores.double(), expected, atol=1e-5, rtol=0)
    with adapters_disabled(model):
        base = choice_logprobs(model, tokenizer, rows, template="cloze", batch_size=2)
    finite = torch.isfinite(base)
    assert (scores[finite] - base[finite]).abs().max() > 0.1, "the edit must change the scores for this to test it"
