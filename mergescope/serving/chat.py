"""Chat templates of served models: lm-eval's chat prompts on the live vLLM engine, and rubric answers.

A rubric question is asked as the one user turn of the model's chat template where its tokenizer has one (an
instruct model answers a chat, not a bare text), else as plain text; the stored sampling config says which.
"""

from __future__ import annotations

from typing import Any


def has_chat_template(tokenizer: Any) -> bool:
    """Whether the tokenizer carries a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def render_chat(
    tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool = True, template: str | None = None
) -> str:
    """`messages` rendered by the tokenizer's chat template (its template named `template`, if given), as lm-eval's
    hf model renders them: an unfinished assistant turn is continued, a system turn the template refuses dropped."""
    import jinja2

    def render(chat: list[dict[str, str]]) -> str:
        return tokenizer.apply_chat_template(
            chat,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=not add_generation_prompt,
            chat_template=template,
        )

    try:
        return render(messages)
    except jinja2.exceptions.TemplateError:
        return render([message for message in messages if message["role"] != "system"])


def answer_prompt_ids(tokenizer: Any, prompts: list[str]) -> list[list[int]]:
    """Token ids of each answer prompt: the user turn of the chat template where there is one (the template
    writes its own special tokens, so none are added), else the plain text encoded with the tokenizer's defaults."""
    if not has_chat_template(tokenizer):
        return [tokenizer(prompt).input_ids for prompt in prompts]
    texts = [render_chat(tokenizer, [{"role": "user", "content": prompt}]) for prompt in prompts]
    return [tokenizer(text, add_special_tokens=False).input_ids for text in texts]
