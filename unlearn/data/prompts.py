"""How a question becomes the text a model continues: one format for training, evaluation and sampling."""

from __future__ import annotations

QUESTION = "{question}"
PLAIN_TEMPLATE = "Question: {question}\nAnswer:"
_PROBE = "\uffffQUESTION\uffff"  # stands in for a question to find what a format puts after it


class PromptFormat:
    """`plain` (Question:/Answer:), `chat` (the tokenizer's own chat template) or a template with `{question}`.

    A chat prompt already carries the model's special tokens, so it is tokenised without adding them again, and
    the answer follows the assistant header directly; plain and template prompts are followed by " " + answer.
    """

    def __init__(self, style: str = "plain", system: str | None = None) -> None:
        """
        Args:
            style: plain, chat, or a template string containing {question} (e.g. "Q: {question}\\nA:").
            system: a system message for chat templates; None keeps the template's default.
        """
        if style not in ("plain", "chat") and QUESTION not in style:
            raise ValueError(
                f"prompt_format={style!r} is not plain, chat, or a template containing {QUESTION} "
                "(e.g. 'Q: {question}\\nA:')"
            )
        if system is not None and style != "chat":
            raise ValueError(f"a system message needs prompt_format: chat, not {style!r}")
        self.style = style
        self.system = system

    @property
    def chat(self) -> bool:
        """Whether prompts come from the tokenizer's chat template."""
        return self.style == "chat"

    @property
    def special_tokens(self) -> bool:
        """Whether the tokenizer should add its special tokens (BOS) to a prompt: not to a chat prompt."""
        return not self.chat

    def prompt(self, question: str, tokenizer) -> str:
        """The text the model continues with its answer."""
        if not self.chat:
            return (PLAIN_TEMPLATE if self.style == "plain" else self.style).replace(QUESTION, question)
        if not getattr(tokenizer, "chat_template", None):
            name = getattr(tokenizer, "name_or_path", "this tokenizer")
            raise ValueError(f"prompt_format: chat needs a chat template, but {name} has none; use plain")
        messages = [{"role": "user", "content": question}]
        if self.system is not None:
            messages.insert(0, {"role": "system", "content": self.system})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def answer(self, answer: str) -> str:
        """The answer as it follows the prompt: after a space, or straight after a chat template's header."""
        return answer if self.chat else " " + answer

    def prefix(self, tokenizer) -> str:
        """What the format puts before the question: where a prompt attack's question starts."""
        prompt = self.prompt(_PROBE, tokenizer)
        return prompt[: prompt.index(_PROBE)]

    def suffix(self, tokenizer) -> str:
        """What the format puts after the question: the end of every prompt (where GRUN intervenes)."""
        prompt = self.prompt(_PROBE, tokenizer)
        return prompt[prompt.rindex(_PROBE) + len(_PROBE) :]

    def __repr__(self) -> str:
        return f"PromptFormat({self.style!r})" if self.system is None else f"PromptFormat({self.style!r}, system=…)"


PLAIN = PromptFormat()  # the format the embedded tiny models were trained on
