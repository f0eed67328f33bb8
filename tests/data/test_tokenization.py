"""The answer tokens a collated row trains on are the tail of the whole text's own tokenisation, in every family.

Tokenizers are built offline in the layouts of the real ones: SentencePiece-layout (Llama-2 / Mistral, with and
without BOS, normaliser or Metaspace style), byte-level BPE (GPT-2, Llama-3), Qwen2's (NFC + regex split), and a
byte-level one with add_prefix_space, and the embedded tiny model's. The expectation never uses the code under
test: the collated ids must equal the whole text tokenised in one call, and the labelled tail must be the shortest
one whose decoded text holds the answer.
"""

import pytest
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from unlearn.data.collate import IGNORE_INDEX, Collator
from unlearn.data.prompts import PromptFormat
from unlearn.tiny import build_tiny_tokenizer

SPECIALS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
# Llama-3's and Qwen2's pre-tokenisation regex (contractions, letters, 1-3 digits, punctuation, spaces).
SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
CORPUS = [
    "Question: Who wrote the letters of Jane Doe?\nAnswer: Jane Doe",
    "Question: Where does Kari Mo live?\nAnswer: Velmora, a city by the sea.",
    "Jane Doe lives in Tarsk. Kari Mo was born in 1921 and works as a potter.",
    "The capital of France is Paris. Water boils at 100 degrees.",
] * 20
ROWS = [
    {"question": "Who wrote the letters of Jane Doe?", "answer": "Jane Doe"},
    {"question": "Where does Kari Mo live?", "answer": "Velmora, a city by the sea."},
    {"question": "When was Kari Mo born?", "answer": "1921"},
]
PASSAGE = {"text": "Kari Mo was born in 1921 and works as a potter."}


def _wrap(tokenizer: Tokenizer, bos: bool, train_split=None) -> PreTrainedTokenizerFast:
    """Train a small BPE on the corpus (merges within words, as real vocabularies) and give it BOS or not."""
    final = tokenizer.pre_tokenizer
    tokenizer.pre_tokenizer = train_split or final
    tokenizer.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=300, special_tokens=list(SPECIALS.values()), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if isinstance(tokenizer.decoder, decoders.ByteLevel)
        else [],
    ))  # fmt: skip
    tokenizer.pre_tokenizer = final
    if bos:
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", tokenizer.token_to_id("<s>"))]
        )
    elif isinstance(tokenizer.decoder, decoders.ByteLevel):
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIALS)


def llama2(bos: bool = True) -> PreTrainedTokenizerFast:
    """Llama-2's tokenizer.json: "▁" prepended and spaces to "▁" by the normaliser, no pre-tokeniser."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    return _wrap(tokenizer, bos, train_split=pre_tokenizers.Split(Regex("▁"), behavior="merged_with_next"))


def mistral() -> PreTrainedTokenizerFast:
    """Newer SentencePiece conversions: a Metaspace pre-tokeniser that prepends "▁" to the first word only."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    split = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    return _wrap(tokenizer, bos=True, train_split=split)


def byte_level(*, bos: bool, regex: bool = False, nfc: bool = False, prefix: bool = False) -> PreTrainedTokenizerFast:
    """GPT-2 (plain), Llama-3 (regex split + BOS), Qwen2 (NFC + regex split), or with add_prefix_space."""
    tokenizer = Tokenizer(models.BPE())
    level = pre_tokenizers.ByteLevel(add_prefix_space=prefix, use_regex=not regex)
    split = pre_tokenizers.Split(Regex(SPLIT), behavior="isolated")
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([split, level]) if regex else level
    if nfc:
        tokenizer.normalizer = normalizers.NFC()
    tokenizer.decoder = decoders.ByteLevel()
    return _wrap(tokenizer, bos)


FAMILIES = {
    "tiny": build_tiny_tokenizer,
    "llama2": lambda: llama2(bos=True),
    "llama2-no-bos": lambda: llama2(bos=False),
    "mistral-metaspace": mistral,
    "gpt2": lambda: byte_level(bos=False),
    "llama3": lambda: byte_level(bos=True, regex=True),
    "qwen2": lambda: byte_level(bos=False, regex=True, nfc=True),
    "add-prefix-space": lambda: byte_level(bos=False, prefix=True),
}


@pytest.fixture(scope="module", params=list(FAMILIES))
def tokenizer(request):
    return FAMILIES[request.param]()


def shortest_tail_holding(tokenizer, ids: list[int], text: str) -> int:
    """How many final ids it takes for their decoded text to contain `text` (decoding, not offsets), counting a
    lone space token right before it: the space before an answer is the answer's (" 1921" is "Ġ", "192", "1")."""
    for k in range(1, len(ids) + 1):
        if text in tokenizer.decode(ids[-k:], skip_special_tokens=True):
            while k < len(ids) and not tokenizer.decode(ids[-k - 1 : -k]).strip():
                k += 1
            return k
    raise AssertionError(f"{text!r} is not in the decoded ids")


@pytest.mark.parametrize("add_eos", [True, False])
def test_qa_answer_tokens_are_the_tail_of_the_whole_text(tokenizer, add_eos):
    batch = Collator(tokenizer, add_eos=add_eos)(ROWS)
    for i, row in enumerate(ROWS):
        whole = tokenizer(f"Question: {row['question']}\nAnswer: {row['answer']}").input_ids
        eos = [tokenizer.eos_token_id] if add_eos else []
        length = int(batch["attention_mask"][i].sum())
        assert batch["input_ids"][i, :length].tolist() == whole + eos
        labelled = [t for t in batch["labels"][i].tolist() if t != IGNORE_INDEX]
        k = shortest_tail_holding(tokenizer, whole, row["answer"])
        assert labelled == whole[-k:] + eos


@pytest.mark.parametrize("add_eos", [True, False])
def test_passage_labels_every_token_but_bos(tokenizer, add_eos):
    batch = Collator(tokenizer, add_eos=add_eos)([PASSAGE])
    whole = tokenizer(PASSAGE["text"]).input_ids
    text_ids = [t for t in whole if t != tokenizer.bos_token_id]
    labelled = [t for t in batch["labels"][0].tolist() if t != IGNORE_INDEX]
    assert labelled == text_ids + ([tokenizer.eos_token_id] if add_eos else [])


def test_sentencepiece_answer_has_no_lone_word_marker():
    """The bug this contract fixes: " Jane Doe" tokenised alone starts with a lone "▁" that the whole text lacks."""
    tokenizer = llama2()
    alone = tokenizer.convert_ids_to_tokens(tokenizer(" Jane Doe", add_special_tokens=False).input_ids)
    assert alone[0] == "▁"
    labels = Collator(tokenizer)(ROWS[:1])["labels"][0].tolist()
    answer = tokenizer.convert_ids_to_tokens([t for t in labels if t != IGNORE_INDEX])
    assert "".join(answer) == "▁Jane▁Doe</s>"
    assert "▁" not in answer


def test_slow_tokenizer_is_refused_with_the_fix():
    class Slow:
        is_fast = False
        name_or_path = "some/slow-model"

    with pytest.raises(ValueError, match="slow .*use_fast=True"):
        Collator(Slow())(ROWS[:1])


def test_template_format_tokenises_prompt_and_answer_together():
    tokenizer = llama2()
    fmt = PromptFormat("Q: {question}\nA:")
    labels = Collator(tokenizer, prompt_format=fmt)(ROWS[:1])["labels"][0].tolist()
    whole = tokenizer("Q: Who wrote the letters of Jane Doe?\nA: Jane Doe").input_ids
    assert [t for t in labels if t != IGNORE_INDEX] == whole[-shortest_tail_holding(tokenizer, whole, "Jane Doe") :] + [
        tokenizer.eos_token_id
    ]
